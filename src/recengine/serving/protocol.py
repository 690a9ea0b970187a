"""The HTTP protocol ``recengine serve`` runs: uvicorn's h11, with Nagle's algorithm off.

asyncio turns Nagle off only on sockets whose protocol number says TCP. uvicorn binds the socket
it shares between ``--workers`` processes itself, with protocol number 0, so connections
accepted there kept Nagle on: a reply written in two parts (headers, body) waited for the
client's delayed acknowledgement, 40 ms per request on a kept-alive connection (182 requests/s
against 3,500 with one process; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["NoDelayH11"]


class NoDelayH11(H11Protocol):
    """uvicorn's h11 protocol, setting ``TCP_NODELAY`` on each connection it is given."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]

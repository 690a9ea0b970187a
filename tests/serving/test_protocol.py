"""``recengine serve`` turns Nagle's algorithm off on every connection, --workers or not."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from recengine.serving.protocol import NoDelayH11


def _nodelay_of_a_connection(protocol: type[H11Protocol]) -> int:
    """TCP_NODELAY on the server side of one connection accepted on a socket bound as uvicorn
    binds the one it shares with its worker processes (protocol number 0)."""
    config = Config(app=lambda scope, receive, send: None)
    config.load()
    sockets: list[socket.socket] = []

    class Spy(protocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            sockets.append(transport.get_extra_info("socket"))

    async def connect() -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(
            lambda: Spy(config=config, server_state=ServerState(), app_state={}), sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if sockets:
                break
            await asyncio.sleep(0.01)
        nodelay = sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        server.close()
        return nodelay

    return asyncio.run(connect())


def test_connections_on_a_shared_socket_have_nagle_off() -> None:
    assert _nodelay_of_a_connection(NoDelayH11) != 0


def test_uvicorns_own_protocol_leaves_it_on_there() -> None:
    """Why the subclass exists: asyncio skips sockets whose protocol number is 0."""
    assert _nodelay_of_a_connection(H11Protocol) == 0

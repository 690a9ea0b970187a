"""Giving the memory of a replaced model version back to the system.

A served version's arrays are freed when the version after next replaces it, but glibc keeps
freed pages in its heaps for reuse, and a long-running server's RSS climbs at each swap (the
30-minute soak in docs/benchmarks.md: +64 MB an hour, in steps at the retrains) although the
memory Python holds stays flat. ``malloc_trim(0)`` hands the free pages back. It runs off the
event loop, once per swap, and ctypes releases the interpreter lock while it runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["trim_heap"]


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def trim_heap() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot (it is
    not glibc: musl, macOS), which changes nothing but the figure ``ps`` shows.

    >>> isinstance(trim_heap(), bool)
    True
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True

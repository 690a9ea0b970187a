"""torch keeps the OpenMP runtime it ships, apart from the one numba loads.

numba's OpenMP threading layer (the compiled kernels' ``prange``) loads the system's
``libgomp``, whose soname is ``libgomp.so.1``. torch's libraries ask for ``libgomp.so.1`` too,
so a torch imported after a kernel has run binds to the system's runtime instead of its own.
With that runtime, once torch's thread count has changed (the two-tower model and the hybrid
train on one thread and then give the count back), every parallel torch operation waits for
its other thread to wake: a 77,000-element ``sqrt`` took 2.8 ms instead of 0.2 ms
(``benchmarks/bench_openmp.py``), and ``sasrec``'s fit in the demo 55 s instead of 17 s.
Loading torch's own ``libgomp`` before any kernel runs gives each library its own runtime
(numba asks for ``libgomp.so.1.0.0``, a name torch's copy does not answer to), as when torch is
imported first. Loading the library costs a millisecond; importing torch would cost seconds,
so only the library is loaded.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

__all__ = ["load_torch_openmp"]


def load_torch_openmp() -> Path | None:
    """Load the ``libgomp`` that torch ships, where torch is installed (Linux wheels); its path.

    Nothing happens elsewhere: without torch there is no second user of the runtime, and other
    platforms' torch builds link their runtime under a name of its own.
    """
    if not sys.platform.startswith("linux"):
        return None
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        library = Path(folder) / "lib" / "libgomp.so.1"
        if library.is_file():
            ctypes.CDLL(str(library))
            return library
    return None

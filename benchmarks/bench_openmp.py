"""torch's parallel operations after numba's kernels ran, with and without torch's own OpenMP
runtime loaded first (:func:`recengine.models.openmp.load_torch_openmp`).

Each case runs in a process of its own (a loaded library cannot be unloaded): a numba
``prange`` kernel runs (numba's OpenMP layer loads the system's ``libgomp``), then torch is
imported, its thread count goes to 1 and back (as the two-tower model's and the hybrid's fits
do), and 2,000 square roots of a 76,864-float tensor (the size of an item table's Adam step)
are timed on torch's threads, with the process's loaded ``libgomp`` files. ``fresh`` is
torch alone, no kernel run: the reference.

    python benchmarks/bench_openmp.py
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CASE = textwrap.dedent("""
    import sys, time
    case = sys.argv[1]
    if case == "preloaded":
        from recengine.models.openmp import load_torch_openmp
        load_torch_openmp()
    if case != "fresh":
        import numba, numpy as np

        @numba.njit(parallel=True)
        def total(x):
            s = 0.0
            for i in numba.prange(len(x)):
                s += x[i] ** 0.5
            return s

        total(np.ones(1_000_000))
    import torch
    torch.set_num_threads(1)
    torch.ones(100_000).sqrt()
    torch.set_num_threads(2)
    w = torch.randn(76_864)
    w.sqrt()
    start = time.perf_counter()
    for _ in range(2000):
        w.sqrt()
    ms = (time.perf_counter() - start) / 2000 * 1000
    runtimes = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line})
    print(f"| {case} | {ms:.3f} | {', '.join(runtimes)} |")
""")


def main() -> None:
    print("| case | ms per sqrt (2 threads) | libgomp loaded |\n|---|---:|---|")
    for case in ("fresh", "numba first", "preloaded"):
        out = subprocess.run([sys.executable, "-c", CASE, case], capture_output=True,
                             text=True, check=True)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()

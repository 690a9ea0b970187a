"""The top-k kernel (:func:`recengine.models.base.top_k`, one server request: one row on one
thread) against NumPy's ``argpartition`` plus a sort of the ``k`` it keeps, on rows of
100,000 scores in four orders: shuffled, ascending with the item index (popularity where the
newest items sell most), descending, and Zipf-distributed counts (many ties).

    python benchmarks/bench_top_k.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from recengine.models.base import top_k


def numpy_top_k(row: np.ndarray, k: int) -> np.ndarray:
    """The reference: the ``k`` best of one row, best first (ties in no set order)."""
    part = np.argpartition(-row, k)[:k]
    return part[np.argsort(-row[part], kind="stable")]


def ms(call: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``call`` over ``repeats`` runs (one warm-up first)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.items
    rows = {"shuffled": rng.random(n), "ascending": np.sort(rng.random(n)),
            "descending": np.sort(rng.random(n))[::-1], "zipf counts": rng.zipf(1.5, n)}
    print(f"{n:,} scores a row, one row, one thread; median ms of {args.repeats} runs\n")
    print("| row order | k | top_k | argpartition + sort | ratio |\n|---|---:|---:|---:|---:|")
    for name, values in rows.items():
        row = np.ascontiguousarray(values, dtype=np.float32)
        for k in (10, 100, 500):
            ours = ms(lambda row=row, k=k: top_k(row[None, :], k), args.repeats)
            reference = ms(lambda row=row, k=k: numpy_top_k(row, k), args.repeats)
            print(f"| {name} | {k} | {ours:.3f} | {reference:.3f} | {reference / ours:.1f}× |")


if __name__ == "__main__":
    main()

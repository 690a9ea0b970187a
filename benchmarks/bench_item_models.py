"""EASE and item-kNN: training time on MovieLens 100K, and one request over 100,000 items.

- Training: ``ease``, ``item-knn`` and, for scale, ``wals`` (each with the parameters given, by
  default their defaults), fitted ``--repeats`` times on the training part of MovieLens 100K's
  per-user stratified 75/25 split (seed 42), BLAS on one thread (on a shared 2-core machine,
  OpenBLAS's two threads made EASE's inverse 5-10 times slower); the median wall time.
- One request: the top-10 for a visitor known only by a 50-event history (``recommend_history``:
  ids in, ids out, the history's items excluded), one at a time on one thread, p50 and p99 over
  ``--requests`` histories drawn by popularity, wall and CPU time: on MovieLens 100K for both
  models, and for item-kNN over a synthetic catalogue of ``--items`` items (ease refuses it:
  ``max_items``), fitted, and with every item given ``neighbours`` random neighbours (the most
  one request can read).

    python benchmarks/bench_item_models.py --path ../shared/datasets/ml-100k
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from recengine.data.loaders import load_dataset
from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.errors import DataError
from recengine.models.base import Recommender
from recengine.models.item_knn import ItemKNN
from recengine.models.registry import create_model
from recengine.pipeline.prepare import prepare, training_data

HISTORY = 50


def fit_seconds(make: Callable[[], Recommender], data: TrainingData,
                repeats: int) -> tuple[Recommender, float]:
    """A fitted model and the median wall time of ``repeats`` fits."""
    times, model = [], None
    with threadpool_limits(1):
        for _ in range(repeats):
            start = time.perf_counter()
            model = make().fit(data)
            times.append(time.perf_counter() - start)
    assert model is not None
    return model, float(np.median(times))


def request_ms(model: Recommender, data: TrainingData, requests: int,
               seed: int = 1) -> str:
    """Table cells: p50 and p99 milliseconds of one top-10 for a 50-item history (distinct
    items drawn by popularity), wall time, then the thread's CPU time (what the code costs,
    apart from waiting for a core on a shared machine)."""
    counts = data.item_counts().astype(np.float64)
    rng = np.random.default_rng(seed)
    ids = data.items.ids
    histories = [ids[rng.choice(len(ids), HISTORY, replace=False, p=counts / counts.sum())]
                 .tolist() for _ in range(requests)]
    model.recommend_history(histories[0], 10)  # first call: imports, caches
    wall, cpu = [], []
    with threadpool_limits(1):
        for history in histories:
            start, start_cpu = time.perf_counter(), time.thread_time()
            model.recommend_history(history, 10)
            wall.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
    return " | ".join(f"{np.percentile(t, q) * 1e3:.3f}" for t in (wall, cpu) for q in (50, 99))


def full_neighbours(data: TrainingData, k: int, seed: int = 2) -> Recommender:
    """An item-kNN whose every item has ``k`` random neighbours: the most a request can read
    at that ``neighbours`` (a fitted model on sparse data has fewer)."""
    n = data.n_items
    rng = np.random.default_rng(seed)
    columns = np.sort((np.arange(n)[:, None] + rng.choice(np.arange(1, n), k, replace=False)
                       [None, :]) % n, axis=1)
    arrays = {"similarity_data_": rng.random(n * k).astype(np.float32),
              "similarity_indices_": columns.ravel().astype(np.int32),
              "similarity_indptr_": np.arange(0, n * k + 1, k, dtype=np.int64),
              "item_counts_": data.item_counts()}
    return create_model("item-knn", neighbours=k).set_state(data.users, data.items, arrays, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="../shared/datasets/ml-100k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON",
                        help='parameters per model, e.g. \'{"ease": {"l2": 376}}\'')
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_item_models.py {' '.join(sys.argv[1:])}\n```\n")

    dataset, _ = load_dataset("movielens-100k", args.path)
    data = prepare(dataset, "stratified", test_fraction=0.25, seed=42).data
    print(f"MovieLens 100K training part: {data.n_users} users, {data.n_items} items, "
          f"{data.feedback.nnz} pairs\n")
    print("| model | catalogue | fit, median s | request p50 ms | p99 ms | CPU p50 ms | "
          "CPU p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name in ("ease", "item-knn", "wals"):
        params = args.set.get(name, {})
        model, seconds = fit_seconds(lambda n=name, p=params: create_model(n, **p), data,
                                     args.repeats)
        served = request_ms(model, data, args.requests) if name != "wals" else "– | – | – | –"
        print(f"| {name} {params or ''} | MovieLens 100K | {seconds:.2f} | {served} |")

    synthetic = generate(n_users=args.users, n_items=args.items, seed=0,
                         mean_events_per_user=20)
    big = training_data(synthetic, aggregate(synthetic.events, synthetic.schema))
    where = f"synthetic, {big.n_items:,} items, {big.n_users:,} users, {big.feedback.nnz:,} pairs"
    params = args.set.get("item-knn", {})
    model, seconds = fit_seconds(lambda: create_model("item-knn", **params), big, 1)
    assert isinstance(model, ItemKNN)
    mean = model.similarity_.nnz / big.n_items
    print(f"| item-knn {params or ''} | {where}; {mean:.1f} neighbours per item | {seconds:.2f} "
          f"| {request_ms(model, big, args.requests)} |")
    k = model.config.neighbours
    print(f"| item-knn, {k} random neighbours for every item | {where} | – "
          f"| {request_ms(full_neighbours(big, k), big, args.requests)} |")
    try:
        create_model("ease").fit(big)
    except DataError as exc:
        print(f"\nease on the synthetic catalogue: {exc}")


if __name__ == "__main__":
    main()

"""The two-tower model's cost (issue 12, protocol 5): training on MovieLens 100K, and one
request (a 50-event history) over a 100,000-item catalogue, exact and from the HNSW graph.

- Training: ``TwoTower()`` at its defaults on all of MovieLens 100K, wall seconds of ``fit``
  (epochs until early stopping), and the process's CPU seconds beside them (the machine is
  shared: wall time depends on the neighbours, CPU time much less).
- Serving: the model fitted on a synthetic catalogue (``--items`` rentals, ``--epochs``: the
  cost of a request does not depend on how well it learned), then ``--queries`` single
  requests of a user known only by ``--history`` events (the user tower runs on each), timed
  one at a time on one thread: p50 and p99 milliseconds, exact scoring of every item against
  the graph (``build_index``), with the graph's recall@10 against the exact lists.

    python benchmarks/bench_two_tower.py --path ../shared/datasets/ml-100k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from recengine.data.loaders import load_movielens_100k
from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models.base import TrainingOptions
from recengine.models.retrieval import recall
from recengine.models.two_tower import TwoTower
from recengine.pipeline.prepare import events_of, training_data


def training_time(path: Path) -> None:
    dataset, _ = load_movielens_100k(path)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))
    start, cpu = time.perf_counter(), time.process_time()
    model = TwoTower().fit(data)
    print(f"MovieLens 100K, all {data.feedback.nnz:,} ratings, defaults: fit "
          f"{time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; "
          f"{model.training_}\n")


def request_latency(n_items: int, n_users: int, epochs: int, history: int,
                    n_queries: int) -> None:
    dataset = generate(n_users=n_users, n_items=n_items, seed=0, mean_events_per_user=20)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    start = time.perf_counter()
    model = TwoTower(epochs=epochs, validation_users=500).fit(
        data, options=TrainingOptions(threads=1))
    fit_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    histories = [data.items.ids[rng.choice(data.n_items, history, replace=False)].tolist()
                 for _ in range(n_queries)]
    import torch

    torch.set_num_threads(1)
    with threadpool_limits(1):
        exact, exact_ms = _timed(model, histories)
        start = time.perf_counter()
        model.build_index()
        build_s = time.perf_counter() - start
        approximate, graph_ms = _timed(model, histories)
    print(f"{data.n_items:,} items ({data.n_users:,} users; fit {fit_s:.0f} s, {epochs} epochs); "
          f"{n_queries} requests of a new user with a {history}-event history, one thread; "
          f"graph (M=16, ef_search 64) built in {build_s:.1f} s.\n")
    print("| answer | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|")
    for name, ms, found in (("exact (every item scored)", exact_ms, exact),
                            ("HNSW graph", graph_ms, approximate)):
        print(f"| {name} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | "
              f"{recall(found, exact):.3f} |")


def _timed(model: TwoTower, histories: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Each history's top-10 item indices, and each request's milliseconds (after three
    warm-up requests)."""
    for history in histories[:3]:
        model.recommend_history(history, 10)
    lists, ms = [], []
    for history in histories:
        start = time.perf_counter()
        ids, _ = model.recommend_history(history, 10)
        ms.append((time.perf_counter() - start) * 1e3)
        lists.append(model.items_.index(ids))
    return np.array(lists), np.array(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=Path("../shared/datasets/ml-100k"))
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_two_tower.py {' '.join(sys.argv[1:])}\n```\n")
    if not args.skip_training:
        training_time(args.path)
    request_latency(args.items, args.users, args.epochs, args.history, args.queries)


if __name__ == "__main__":
    main()

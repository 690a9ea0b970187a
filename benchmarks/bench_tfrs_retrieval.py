"""TensorFlow Recommenders' retrieval tutorial, reproduced in-engine (issue 12, protocol 3).

Their protocol, not the evaluator's: MovieLens 100K, the ratings shuffled (seeded) and split
80/20 *across* users (not per user), every rating a positive, and for each test rating whether
its movie is in the user's top ``k`` among *all* 1,682 movies, the user's training movies
included (``FactorizedTopK``'s ``top_k_categorical_accuracy``: a mean over test ratings, not
over users). TFRS reports top-100 accuracy of about 0.27 with one layer and 0.29 with two.

The evaluator cannot run it: it always excludes seen items and averages per user, and has no
split across users. So this script is the command; it builds the training data, the models and
their top-k with recengine's own pieces (``training_data``, ``fit``, ``recommend_queries``).

    python benchmarks/bench_tfrs_retrieval.py --path ../shared/datasets/ml-100k \\
        --models two-tower,popularity [--config tuned.json] [--set two-tower:KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.loaders import load_movielens_100k
from recengine.data.weighting import aggregate
from recengine.models.registry import create_model
from recengine.pipeline.prepare import events_of, training_data
from recengine.pipeline.tune import read_config_file

KS = (1, 5, 10, 50, 100)


def random_split(pairs: pd.DataFrame, test_fraction: float,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pairs shuffled with ``seed`` (in a canonical order first), the last fraction test."""
    pairs = pairs.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(pairs))
    cut = round(len(pairs) * (1 - test_fraction))
    return pairs.iloc[order[:cut]], pairs.iloc[order[cut:]]


def accuracy(top: np.ndarray, users: np.ndarray, items: np.ndarray) -> dict[str, float]:
    """For each test pair (row ``users[e]``, item ``items[e]``), whether the item is in the
    row's top k: the mean over test pairs at each k of :data:`KS`."""
    rank = np.full(len(users), np.iinfo(np.int64).max)
    where = top[users] == items[:, None]
    found = where.any(axis=1)
    rank[found] = where[found].argmax(axis=1)
    return {f"top_{k}": float((rank < k).mean()) for k in KS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=Path("../shared/datasets/ml-100k"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--models", default="two-tower,popularity")
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="a model's configuration (JSON from `recengine tune`)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="one parameter of one model (JSON value)")
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_tfrs_retrieval.py {' '.join(sys.argv[1:])}\n```\n")
    configs: dict[str, dict[str, object]] = {name: {} for name in args.models.split(",")}
    configs |= dict(read_config_file(path) for path in args.config)
    for setting in args.set:  # MODEL:KEY=VALUE, MODEL itself may be package.module:Class
        head, _, value = setting.partition("=")
        name, _, key = head.rpartition(":")
        configs.setdefault(name, {})[key] = json.loads(value)

    dataset, _ = load_movielens_100k(args.path)
    train, test = random_split(aggregate(dataset.events, dataset.schema), args.test_fraction,
                               args.seed)
    data = training_data(dataset, train, extra_items=test["item_id"].unique(),
                         events=events_of(dataset))
    known = test["user_id"].isin(train["user_id"]).to_numpy()
    users = data.users.index(test["user_id"][known])
    items = data.items.index(test["item_id"][known])
    print(f"{len(train)} training ratings, {len(test)} test ratings "
          f"({int((~known).sum())} of users without training ratings, left out)\n")
    print("| model | parameters | " + " | ".join(f"top-{k}" for k in KS)
          + " | fit s |\n|---|---|" + "---|" * len(KS) + "---|")
    queries = data.queries(np.arange(data.n_users))
    for name, config in configs.items():
        model = create_model(name, **config)
        start = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - start
        top, _ = model.recommend_queries(queries, max(KS), exclude_seen=False)
        scores = accuracy(top, users, items)
        shown = json.dumps(config) if config else "defaults"
        print(f"| {name} | {shown} | " + " | ".join(f"{v:.4f}" for v in scores.values())
              + f" | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()

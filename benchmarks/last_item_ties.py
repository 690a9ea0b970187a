"""How much the order of same-second events matters to the last-one-out protocol.

MovieLens 100K stamps ratings to the second, and users rated in bursts: a user's last rating
often shares its second with others. ``--split last`` picks the test item among those by item id
(the last by id string), while the training log keeps same-second events in the file's order.
This measures how often that happens and what it does to the scores: the same models on three
splits that differ only in the tie rule (item id, the file's order, a seeded random draw).

    python benchmarks/last_item_ties.py --models popularity,ease,markov,sasrec
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from recengine.data.loaders import load_dataset
from recengine.data.splits import Split
from recengine.data.weighting import aggregate
from recengine.evaluation.evaluator import evaluate
from recengine.models.registry import create_model
from recengine.pipeline.prepare import events_of, training_data

RULES = ("item-id", "file-order", "random")


def last_one_out(interactions: pd.DataFrame, tie_key: np.ndarray) -> Split:
    """Each user's latest pair to test (ties: the largest ``tie_key``), if another remains."""
    frame = interactions.assign(_tie=tie_key)
    ordered = frame.sort_values(["user_id", "timestamp", "_tie"], kind="stable")
    from_end = ordered.groupby("user_id").cumcount(ascending=False)
    size = ordered.groupby("user_id")["item_id"].transform("size")
    test = (from_end < 1) & (size > 1)
    ordered = ordered.drop(columns="_tie")
    return Split(ordered[~test].reset_index(drop=True), ordered[test].reset_index(drop=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default="../shared/datasets/ml-100k")
    parser.add_argument("--models", default="popularity,ease,markov")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    dataset, _ = load_dataset("movielens-100k", args.path, seed=args.seed)
    interactions = aggregate(dataset.events, dataset.schema)
    events = events_of(dataset)
    # Each pair's last event's row in the file, for the file's order.
    rows = dataset.events.reset_index(drop=True).reset_index()[["index", "user_id", "item_id"]]
    position = rows.groupby(["user_id", "item_id"])["index"].max()
    keys = {"item-id": interactions["item_id"].astype(str).to_numpy(),
            "file-order": position.reindex(pd.MultiIndex.from_frame(
                interactions[["user_id", "item_id"]])).to_numpy(),
            "random": np.random.default_rng(args.seed).random(len(interactions))}
    latest = interactions.groupby("user_id")["timestamp"].transform("max")
    tied = (interactions["timestamp"] == latest).groupby(interactions["user_id"]).sum()
    print(f"users whose latest second holds more than one pair: {(tied > 1).mean():.1%} "
          f"(mean {tied[tied > 1].mean():.1f} pairs in it)")
    names = args.models.split(",")
    table: dict[str, dict[str, float]] = {}
    targets = {}
    for rule in RULES:
        split = last_one_out(interactions, keys[rule])
        targets[rule] = split.test.set_index("user_id")["item_id"]
        data = training_data(dataset, split.train, events=events,
                             extra_items=np.asarray(split.test["item_id"].unique(), object))
        result = evaluate({n: create_model(n) for n in names}, data, split, ks=[10])
        table[rule] = {n: r.metrics["ndcg@10"] for n, r in result.models.items()}
    same = (targets["item-id"] == targets["file-order"].reindex(targets["item-id"].index)).mean()
    print(f"test items the same under item-id and file-order: {same:.1%}")
    print("\n| tie rule | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for rule in RULES:
        print(f"| {rule} | " + " | ".join(f"{table[rule][n]:.4f}" for n in names) + " |")


if __name__ == "__main__":
    main()

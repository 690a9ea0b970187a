"""Constrained requests: the hybrid proposing among the items a constraint allows, against the
union drawn first and narrowed after (what it did before), and single models under the same
constraint; one split, one run.

Protocol (issue 13, "the knowledge-based constraints when the query carries them"): a dataset
with a multi-valued item field (``--field``; Last.fm 2K's artist ``tags`` by default), split per
user, stratified 75/25, seed 42. For each test user one of their test items is drawn (seeded);
its first label ``T`` makes the request's constraint, ``FIELD has "T"`` ("rock, please"), and
the relevant items are the user's test items labelled ``T``. Each model answers the constrained
request (top 10, seen items excluded) and is scored by nDCG@10 and HR@10 against those items:

- ``hybrid, narrowed after``: the hybrid's answer with the constraint as a score transform only
  (its union drawn from the whole catalogue, the allowed items the union missed ranked below in
  its first source's order);
- ``hybrid, proposed within``: the constraint also passed as the items it rules out
  (``exclude``), as the server's rule engine passes it: every source proposes its best allowed
  items and the ranker orders them;
- every other model of ``--models`` with the same constraint.

The constraint is drawn from the held-out item, so the figures measure ranking *under* a
constraint the user would plausibly ask for, not how well a model guesses it.

    python benchmarks/bench_hybrid_constraints.py
    python benchmarks/bench_hybrid_constraints.py --models wals,item-knn,hybrid --config h.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recengine.data.loaders import load_dataset
from recengine.evaluation.metrics.ranking import ndcg_at_k
from recengine.models.base import Recommender
from recengine.models.constraints import Catalog
from recengine.models.hybrid import Hybrid
from recengine.models.knowledge import constraint_transform
from recengine.models.registry import create_model
from recengine.pipeline.prepare import Prepared, prepare
from recengine.pipeline.tune import read_config_file

FOLDERS = {"lastfm-2k": "hetrec2011-lastfm-2k", "movielens-100k": "ml-100k",
           "movielens-latest-small": "ml-latest-small"}
#: Answer depth.
K = 10


def requests(prepared: Prepared, field: str, seed: int) -> list[tuple[int, str, np.ndarray]]:
    """Per test user: their training index, the label asked for, the relevant item indices."""
    data, test = prepared.data, prepared.split.test
    labels = data.item_features[field]
    rng = np.random.default_rng(seed)
    out = []
    for user, items in test.groupby("user_id", sort=True)["item_id"]:
        row = data.users.index([user], missing="negative")[0]
        index = data.items.index(items.tolist(), missing="negative")
        index = index[index >= 0]
        labelled = [i for i in index.tolist() if len(labels.iloc[i])]
        if row < 0 or not labelled:
            continue
        asked = str(labels.iloc[labelled[rng.integers(len(labelled))]][0])
        relevant = np.array([i for i in index.tolist() if asked in list(labels.iloc[i])])
        out.append((int(row), asked, relevant))
    return out


def answers(model: Recommender, asks: list[tuple[int, str, np.ndarray]], catalog: Catalog,
            field: str, within: bool) -> np.ndarray:
    """Each request's top-K item indices under its constraint (``within``: passed as the
    items it rules out too, so a hybrid proposes among the rest)."""
    by_label: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    out = np.full((len(asks), K), -1, dtype=np.int32)
    for row, (user, label, _) in enumerate(asks):
        constraint = f'{field} has {json.dumps(label)}'
        transform = by_label.setdefault(label, constraint_transform(catalog, constraint))
        ruled_out = np.flatnonzero(~catalog.mask(constraint)) if within else None
        idx, _ = model.recommend_queries(model.training_queries(np.array([user])), K,
                                         exclude=ruled_out, transform=transform)
        out[row] = idx[0]
    return out


def scored(top: np.ndarray, asks: list[tuple[int, str, np.ndarray]]) -> dict[str, float]:
    hit = np.array([np.isin(t, relevant) & (t >= 0) for t, (_, _, relevant)
                    in zip(top, asks, strict=True)])
    n_relevant = np.array([len(r) for _, _, r in asks])
    return {"ndcg@10": float(np.nanmean(ndcg_at_k(hit, n_relevant, K))),
            "hit_rate@10": float(hit.any(axis=1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="lastfm-2k", choices=sorted(FOLDERS))
    parser.add_argument("--field", default="tags", help="the multi-valued item field asked for")
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--models", default="popularity,wals,item-knn,content,hybrid")
    parser.add_argument("--config", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    configs = dict(read_config_file(p) for p in args.config)
    loaded, _ = load_dataset(args.dataset, args.root / FOLDERS[args.dataset], seed=args.seed)
    prepared = prepare(loaded, "stratified", test_fraction=0.25, seed=args.seed)
    data = prepared.data
    catalog = Catalog(data.item_features, data.item_feature_kinds)
    asks = requests(prepared, args.field, args.seed)
    allowed = np.mean([catalog.mask(f"{args.field} has {json.dumps(label)}").mean()
                       for _, label, _ in asks])
    print(f"{args.dataset}: {len(asks)} constrained requests; a constraint allows "
          f"{allowed:.1%} of the items on average", flush=True)
    print("\n| model | nDCG@10 | HR@10 |\n|---|---:|---:|")
    for name in args.models.split(","):
        model = create_model(name, **configs.get(name, {})).fit(data)
        ways = ([("narrowed after", False), ("proposed within", True)]
                if isinstance(model, Hybrid) else [("", False)])
        for way, within in ways:
            result = scored(answers(model, asks, catalog, args.field, within), asks)
            label = f"{name}, {way}" if way else name
            print(f"| {label} | {result['ndcg@10']:.4f} | {result['hit_rate@10']:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()

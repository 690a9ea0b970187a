"""Does the hybrid use the device a request comes from? The same hybrid with and without it.

Synthetic rentals (:mod:`recengine.data.synthetic`, step 7: cheaper listings are looked at on
phones more, ``--device-strength`` per standard deviation of log price), per-user stratified
split. Every test user asks once per device among their test pairs, naming it; the relevant
items are the test pairs looked at on that device. Measured on those requests:

- ``wals`` and ``ease`` (which read no context), for reference;
- ``hybrid, blind``: the hybrid fitted on the same training events with their devices removed;
- ``hybrid, device``: the hybrid fitted on the events as they are, asked with the device;
- ``hybrid, device not asked``: the same model, asked without naming the device (what a
  request without one gets, to compare with the blind hybrid).

Both hybrids have the same configuration (the defaults) and seed: the one difference is
whether the events and the requests say which device. ``--device-strength 0`` is the control:
the device says nothing about the listing, and the two hybrids should tie.

    python benchmarks/bench_hybrid_device.py
    python benchmarks/bench_hybrid_device.py --device-strength 0
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.synthetic import generate
from recengine.data.training_data import csr_from_pairs
from recengine.evaluation.metrics import hit_rate_at_k, hits, ndcg_at_k
from recengine.models.base import Recommender
from recengine.models.registry import create_model
from recengine.pipeline.prepare import Prepared, prepare


def requests(prepared: Prepared, events: pd.DataFrame) -> tuple[np.ndarray, list[str],
                                                                 list[np.ndarray]]:
    """One request per test user and device among their test pairs: the user's index, the
    device, and the indices of the test items looked at on it."""
    data, test = prepared.data, prepared.split.test
    device = events.groupby(["user_id", "item_id"])["device"].last()
    test = test.assign(device=device.reindex(
        pd.MultiIndex.from_frame(test[["user_id", "item_id"]])).to_numpy())
    users, devices, relevant = [], [], []
    for (user, name), part in test.groupby(["user_id", "device"], sort=True):
        index = data.users.get(user)
        items = data.items.index(part["item_id"], missing="negative")
        if index >= 0 and (items >= 0).any():
            users.append(index)
            devices.append(str(name))
            relevant.append(items[items >= 0])
    return np.array(users, np.int32), devices, relevant


def scores(model: Recommender, prepared: Prepared, users: np.ndarray,
           devices: list[str | None], relevant: list[np.ndarray], k: int = 10) -> dict[str, float]:
    """nDCG@k and HR@k over the requests (each asked with its device, or none), by the
    evaluator's metrics."""
    queries = prepared.data.queries(users)
    queries.context = tuple({} if d is None else {"device": d} for d in devices)
    top, _ = model.recommend_queries(queries, k)
    wanted = csr_from_pairs(np.repeat(np.arange(len(relevant)), [len(r) for r in relevant]),
                            np.concatenate(relevant), np.ones(sum(map(len, relevant))),
                            (len(relevant), prepared.data.n_items))
    hit = hits(top, wanted)
    return {"ndcg@10": float(ndcg_at_k(hit, np.diff(wanted.indptr), k).mean()),
            "hr@10": float(hit_rate_at_k(hit, k).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--device-strength", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    dataset = generate(n_users=args.users, n_items=args.items, seed=args.seed,
                       device_strength=args.device_strength)
    prepared = prepare(dataset, "stratified", test_fraction=0.25, seed=args.seed)
    blind = prepare(replace(dataset, events=dataset.events.drop(columns="device")),
                    "stratified", test_fraction=0.25, seed=args.seed)
    assert (blind.split.test.equals(prepared.split.test)), "the two splits must be the same"
    users, devices, relevant = requests(prepared, dataset.events)
    print(f"{len(users)} requests from {len(set(users.tolist()))} test users; devices "
          f"{dict(pd.Series(devices).value_counts())}; device strength {args.device_strength}")

    rows: dict[str, dict[str, float]] = {}
    for name, data_of, model_name, asked in (
            ("wals", prepared, "wals", devices), ("ease", prepared, "ease", devices),
            ("hybrid, blind", blind, "hybrid", devices),
            ("hybrid, device", prepared, "hybrid", devices)):
        started = time.perf_counter()
        model = create_model(model_name).fit(data_of.data)
        fit = time.perf_counter() - started
        rows[name] = scores(model, data_of, users, asked, relevant) | {"fit_s": fit}
        if name == "hybrid, device":
            rows["hybrid, device not asked"] = scores(
                model, data_of, users, [None] * len(users), relevant) | {"fit_s": fit}
            rows[name]["validation_ndcg@10"] = model.training_["validation_ndcg@10"]
        print(name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)
    print("| model | nDCG@10 | HR@10 | fit s |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['ndcg@10']:.4f} | {row['hr@10']:.4f} | {row['fit_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": rows}, indent=2))


if __name__ == "__main__":
    main()

"""The hybrid against every single model, on the same split, in the same run.

For each dataset: the split (per-user stratified 75/25 by default, seed 42); every model of
``--models`` fitted on its training part and measured on its test part by the evaluator
(nDCG@10, HR@10, recall@10, and nDCG@10 per activity group: light, medium, heavy users); then,
for the hybrid, its lead over each other model with a paired bootstrap interval over the test
users, the time of one answer (p50 and p99 over 280 users asked one at a time), how
much of the test part its candidate union holds (recall of each source's
proposals kept in the union, and of the union: what each source adds) and how its ranker
trained (validation nDCG@10 on its own carve of the training data, beside each source alone
there).

Models run with their defaults unless ``--config`` files say otherwise (the hybrid's sources
too): a comparison of defaults, not of tuned models, and the table says so. ``--tune TRIALS``
first tunes every single model that declares a search space, ``TRIALS`` trials each (the
first at its defaults, as ``recengine tune`` does), on a validation carve of the training part
(never the test part), and measures each with its best configuration; the hybrid's sources
of those models take the same configurations (the budget spent once, for both), its ranker
keeps its defaults.

    python benchmarks/bench_hybrid.py --datasets movielens-100k,movielens-latest-small,lastfm-2k
    python benchmarks/bench_hybrid.py --config docs/hybrid.toml --split cold-users
    python benchmarks/bench_hybrid.py --models wals,ease,item-knn,hybrid --tune 20

``--seeds 42,43,44,45,46`` repeats the whole run once per seed (the seed draws the split, as
``--seed`` does, and also seeds every model's fit: ``TrainingOptions(seed=...)``, which the
hybrid hands on to its sources), prints each run's table, then per dataset the spread of
nDCG@10 overall and per activity group: each model's mean ± standard deviation over the
seeds, and its paired difference with the hybrid (hybrid − model on the same seed: mean,
standard deviation, and on how many seeds the hybrid was at least as good).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.data.loaders import load_dataset
from recengine.data.query import Query
from recengine.evaluation.evaluator import GROUPS, evaluate
from recengine.models.base import Recommender, TrainingOptions
from recengine.models.hybrid import Hybrid
from recengine.models.hybrid.candidates import propose, union_recall
from recengine.models.hybrid.config import HybridConfig
from recengine.models.registry import create_model, model_class
from recengine.pipeline.prepare import Prepared, carve_validation, prepare
from recengine.pipeline.tune import read_config_file, tune

FOLDERS = {"movielens-100k": "ml-100k", "movielens-latest-small": "ml-latest-small",
           "lastfm-2k": "hetrec2011-lastfm-2k", "amazon-gift-cards": "amazon-2018-gift-cards"}


def union_recall_on_test(model: Hybrid, prepared: Prepared) -> dict[str, float]:
    """Share of the test part's pairs the hybrid's union (and each source in it) proposes."""
    data, test = prepared.data, prepared.split.test
    users = data.users.index(test["user_id"].unique(), missing="negative")
    users = users[users >= 0]
    wanted = test.groupby("user_id")["item_id"].apply(list)
    relevant = [data.items.index(wanted[data.users.ids[u]], missing="negative") for u in users]
    found: dict[str, float] = {}
    for start in range(0, len(users), 512):
        block = users[start:start + 512]
        union = propose(model.sources_, data.queries(block), model.config.candidates)
        part = union_recall(union, relevant[start:start + 512], [s.tag for s in model.sources_])
        share = sum(len(r) for r in relevant[start:start + 512])
        for tag, value in part.items():
            found[tag] = found.get(tag, 0.0) + value * share
    total = sum(len(r) for r in relevant)
    return {tag: value / total for tag, value in found.items()}


def answer_ms(model: Recommender, prepared: Prepared, users: int = 300) -> dict[str, float]:
    """p50 and p99 milliseconds of one top-10 answer (``recommend_query``, ids in and out) for
    the first ``users`` training users, one at a time, the first 20 left out as warm-up."""
    times = []
    for user in prepared.data.users.ids[:users]:
        start = time.perf_counter()
        model.recommend_query(Query(user=str(user)), 10)
        times.append((time.perf_counter() - start) * 1000)
    rest = np.array(times[20:])
    return {"p50": float(np.percentile(rest, 50)), "p99": float(np.percentile(rest, 99))}


def run(dataset: str, root: Path, split: str, names: list[str],
        configs: dict[str, dict[str, object]], seed: int,
        model_seed: int | None = None, trials: int = 0) -> dict[str, object]:
    """One split of ``dataset`` drawn with ``seed``, every model fitted and measured on it;
    with ``model_seed``, every fit is seeded with it (else each model's ``random_state``);
    with ``trials``, the single models tuned first (:func:`tuned`)."""
    loaded, _ = load_dataset(dataset, root / FOLDERS[dataset], seed=seed)
    prepared = prepare(loaded, split, test_fraction=0.25, seed=seed)
    tuning: dict[str, dict[str, Any]] = {}
    if trials:
        validation = carve_validation(loaded, prepared, split, seed=seed)
        tuning = tuned(names, configs, validation, trials, seed)
        best = {name: dict(t["config"]) for name, t in tuning.items()}
        configs = configs | best
        if "hybrid" in names:
            configs["hybrid"] = with_tuned_sources(configs.get("hybrid", {}), best)
    models: dict[str, Recommender] = {n: create_model(n, **configs.get(n, {})) for n in names}
    start = time.perf_counter()
    fitted: dict[str, float] = {}
    if model_seed is not None:  # the evaluator fits without options: fit here, then measure
        for name, model in models.items():
            begin = time.perf_counter()
            model.fit(prepared.data, options=TrainingOptions(seed=model_seed))
            fitted[name] = time.perf_counter() - begin
    result = evaluate(models, prepared.data, prepared.split, ks=[10], prefitted=tuple(fitted))
    out: dict[str, object] = {"dataset": dataset, "split": split, "seconds": round(
        time.perf_counter() - start, 1), "users": result.n_users, "models": {}}
    if tuning:
        out["tuned"] = tuning
    for name, r in result.models.items():
        out["models"][name] = {  # type: ignore[index]
            "ndcg@10": r.metrics["ndcg@10"], "hit_rate@10": r.metrics["hit_rate@10"],
            "recall@10": r.metrics["recall@10"],
            "fit_seconds": round(fitted.get(name, r.fit_seconds), 1),
            **{f"ndcg@10 {g}": r.by_activity.get(g, {}).get("ndcg@10", float("nan"))
               for g in GROUPS}}
    hybrid = models.get("hybrid")
    if isinstance(hybrid, Hybrid):
        out["hybrid_lead"] = {name: result.paired("hybrid", name).to_dict()
                              for name in result.models if name != "hybrid"}
        out["union_recall"] = union_recall_on_test(hybrid, prepared)
        out["answer_ms"] = answer_ms(hybrid, prepared)
        out["hybrid_training"] = hybrid.training_
    return out


def tuned(names: list[str], configs: dict[str, dict[str, object]], validation: Prepared,
          trials: int, seed: int) -> dict[str, dict[str, Any]]:
    """Each model of ``names`` but the hybrid that declares a search space, tuned for
    ``trials`` trials on ``validation`` (a carve of the training part), ``configs`` fixed:
    its best configuration, validation nDCG@10 and the minutes it took."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        fixed = dict(configs.get(name, {}))
        if name == "hybrid" or not model_class(name).search_space(fixed):
            continue
        begin = time.perf_counter()
        result = tune(name, validation.data, validation.split, fixed=fixed, trials=trials,
                      seed=seed)
        out[name] = {"config": result.best_params, "validation ndcg@10": result.best_value,
                     "minutes": round((time.perf_counter() - begin) / 60, 1)}
        print(f"tuned {name}: {json.dumps(out[name], default=float)}", flush=True)
    return out


def with_tuned_sources(hybrid: dict[str, object],
                       best: dict[str, dict[str, object]]) -> dict[str, object]:
    """The hybrid's configuration with each source of a tuned model (and no parameters of its
    own) configured as ``best`` (that model's tuning) says."""
    sources = [source.model_dump() for source in HybridConfig(**hybrid).sources]
    for source in sources:
        if source["model"] in best and not source["params"]:
            source["params"] = best[source["model"]]
    return hybrid | {"sources": sources}


def table(run_: dict[str, object]) -> str:
    models: dict[str, dict[str, float]] = run_["models"]  # type: ignore[assignment]
    columns = ["ndcg@10", "hit_rate@10", "recall@10", *(f"ndcg@10 {g}" for g in GROUPS),
               "fit_seconds"]
    how = ("single models tuned on a validation carve, the hybrid's sources alike, its "
           "ranker at its defaults"
           if "tuned" in run_ else "defaults, untuned")
    lines = [f"{run_['dataset']}, {run_['split']} split, {run_['users']} test users "
             f"({how}):", "",
             "| model | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    best = max(m["ndcg@10"] for m in models.values())
    for name, m in models.items():
        cells = [f"{m[c]:.4f}" if c != "fit_seconds" else f"{m[c]:.1f}" for c in columns]
        if m["ndcg@10"] == best:
            cells[0] = f"**{cells[0]}**"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "union_recall" in run_:
        recall: dict[str, float] = run_["union_recall"]  # type: ignore[assignment]
        leads: dict[str, dict[str, float]] = run_["hybrid_lead"]  # type: ignore[assignment]
        lines += ["", "hybrid's lead, nDCG@10, paired bootstrap over the test users (95 %): "
                  + "; ".join(f"over {name} {d['difference']:+.4f} ({d['low']:+.4f} … "
                              f"{d['high']:+.4f}, {d['share_not_ahead']:.1%} of draws not "
                              f"ahead)" for name, d in leads.items())]
        lines += ["", "hybrid's candidates, share of the test pairs proposed: "
                  + ", ".join(f"{t} {v:.3f}" for t, v in recall.items()),
                  f"hybrid's training: {json.dumps(run_['hybrid_training'])}",
                  "hybrid's answer (one user, top-10), ms: p50 {p50:.1f}, p99 {p99:.1f}".format(
                      **run_["answer_ms"])]  # type: ignore[arg-type]
    return "\n".join(lines)


def model_names(models: str, dataset: str) -> list[str]:
    """The models of ``--models`` that run on ``dataset`` (no ``content`` on amazon-gift-cards)."""
    return [n for n in models.split(",") if n != "content" or dataset != "amazon-gift-cards"]


SPREAD_COLUMNS = ("ndcg@10", *(f"ndcg@10 {g}" for g in GROUPS))


def spread(runs: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per column of ``SPREAD_COLUMNS``, per model of ``runs`` (one dataset, one run a seed):
    mean and standard deviation over the seeds and, beside a ``hybrid``, the paired
    difference hybrid − model (mean, standard deviation, seeds where it is ≥ 0)."""
    models: list[dict[str, dict[str, float]]] = [r["models"] for r in runs]  # type: ignore[misc]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in SPREAD_COLUMNS:
        values = {name: np.array([m[name][column] for m in models]) for name in models[0]}
        if any(np.isnan(v).any() for v in values.values()):
            continue  # a group with no test users on some seed
        out[column] = {}
        for name, v in values.items():
            figures = {"mean": float(v.mean()), "sd": _sd(v)}
            if "hybrid" in values and name != "hybrid":
                diff = values["hybrid"] - v
                figures |= {"diff_mean": float(diff.mean()), "diff_sd": _sd(diff),
                            "hybrid_at_least": int((diff >= 0).sum())}
            out[column][name] = figures
    return out


def _sd(values: npt.NDArray[np.float64]) -> float:
    """Sample standard deviation (n − 1), 0 for a single value."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def spread_table(dataset: str, split: str, seeds: list[int],
                 figures: dict[str, dict[str, dict[str, float]]]) -> str:
    n = len(seeds)
    lines = [f"{dataset}, {split} split, seeds {','.join(map(str, seeds))}: nDCG@10, mean ± sd "
             f"over {n} seeds; hybrid − model paired by seed (mean ± sd, seeds hybrid ≥ model):"]
    for column, per_model in figures.items():
        singles = [name for name in per_model if name != "hybrid"]
        best = max(singles, key=lambda name: per_model[name]["mean"]) if singles else None
        lines += ["", f"{column}:", "", "| model | mean ± sd | hybrid − model | hybrid ≥ |",
                  "|---|---:|---:|---:|"]
        for name, f in per_model.items():
            label = f"{name} (best single)" if name == best else name
            paired = (f"{f['diff_mean']:+.4f} ± {f['diff_sd']:.4f} | {f['hybrid_at_least']}/{n}"
                      if "diff_mean" in f else " | ")
            lines.append(f"| {label} | {f['mean']:.4f} ± {f['sd']:.4f} | {paired} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="movielens-100k")
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--split", default="stratified")
    parser.add_argument("--models", default="popularity,wals,ease,item-knn,content,hybrid")
    parser.add_argument("--config", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", help="comma-separated seeds: one run a seed (split and "
                        "model fits seeded with it), then each model's spread over them")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                        help="tune each single model this many trials first (0: defaults)")
    args = parser.parse_args()
    configs = dict(read_config_file(p) for p in args.config)
    if args.seeds:
        spread_main(args, configs, [int(s) for s in args.seeds.split(",")])
        return
    runs = []
    for dataset in args.datasets.split(","):
        names = model_names(args.models, dataset)
        runs.append(run(dataset, args.root, args.split, names, configs, args.seed,
                        trials=args.tune))
        print(table(runs[-1]), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2, default=float))


def spread_main(args: argparse.Namespace, configs: dict[str, dict[str, object]],
                seeds: list[int]) -> None:
    """``--seeds``: every dataset once per seed, then the spread over the seeds."""
    out = []
    for dataset in args.datasets.split(","):
        names = model_names(args.models, dataset)
        runs = []
        for seed in seeds:
            runs.append({"seed": seed} | run(dataset, args.root, args.split, names, configs,
                                              seed, model_seed=seed, trials=args.tune))
            print(f"seed {seed}: " + table(runs[-1]), "\n", flush=True)
        figures = spread(runs)
        print(spread_table(dataset, args.split, seeds, figures), "\n", flush=True)
        out.append({"dataset": dataset, "split": args.split, "seeds": seeds, "runs": runs,
                    "spread": figures})
        if args.json:  # after each dataset, so a long run keeps what finished
            args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()

"""WALS at its defaults against WALS tuned: explicit ratings, three kinds of implicit feedback.

Explicit (MovieLens 100K folds u1…u5: train ``u{k}.base``, test ``u{k}.test``): test RMSE of
``WALS(feedback="explicit")`` as installed, of the previous docstring's settings, of the proposed
explicit defaults, of the ``bias`` model, and of WALS tuned for RMSE with the project's tuner on
a validation split carved from ``u{k}.base`` only (20 %, seed + 1), the same trial budget on
every fold.

Implicit (per-user stratified 75/25, seed 42, full-catalogue ranking, seen items excluded, as
``recengine evaluate`` does), test nDCG@10 on three kinds of feedback:

- ``binary``: MovieLens 100K, every rated pair has feedback 1;
- ``star``: MovieLens 100K as loaded, the feedback is the stars (1-5);
- ``count``: Last.fm 2K as loaded, the feedback is ``log1p(plays)`` (the ``play`` event type).

Rows: ``WALS()`` as installed, the previous and the proposed implicit defaults, popularity, and
WALS tuned on a validation split carved from the training part (25 %, seed + 1), the same budget
on each kind. ``wals-scaled`` is WALS whose confidence is ``w0 + α · (r / r̄) · C_i · R_u``, with
``r̄`` the mean observed feedback of the training matrix: α then means the same on every scale
(binary feedback is unchanged); it has its own proposed defaults and its own tuned row. Since
the study, it is WALS's default (``confidence="scaled"``); ``wals`` rows set
``confidence="raw"``.

Each figure is also given on the validation carves, where the defaults were chosen.

Every parameter set is written out in full below, so the figures do not depend on the defaults
installed; only the "as installed" rows do. The tuner's first trial is the installed defaults
(its own rule), so the tuned rows can move a little when the defaults change.

    python benchmarks/bench_defaults.py --trials 100 --output recengine-output/defaults.md
    python benchmarks/bench_defaults.py --parts explicit --folds 1,2 --trials 10
    python benchmarks/bench_defaults.py --parts search-explicit,search-implicit
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from recengine.data.dataset import Dataset
from recengine.data.loaders import load_dataset
from recengine.data.splits import Split, make_split
from recengine.data.weighting import aggregate
from recengine.evaluation.evaluator import evaluate
from recengine.models import WALS, Bias, Popularity, Recommender
from recengine.pipeline.prepare import Prepared, carve_validation, training_data
from recengine.pipeline.tune import tune

REPO = Path(__file__).resolve().parents[1]
SEED = 42
KINDS = ("binary", "star", "count")
FOLDS = (1, 2, 3, 4, 5)

#: Every WALS field the rows below do not search, so that no row reads an installed default.
BASE = {"solver": "cg", "cg_steps": 3, "init_scale": 0.01, "user_weight_exponent": 0.0,
        "similarity": "cosine", "random_state": 0, "num_threads": 0}

#: The defaults before this study (one set for both kinds of feedback).
PREVIOUS = BASE | {"feedback": "implicit", "factors": 32, "iterations": 15, "regularization": 30.0,
                   "scale_regularization": False, "alpha": 1.0, "unobserved_weight": 1.0,
                   "item_weight_exponent": 0.0, "biases": False, "confidence": "raw"}
#: What the issue tried: the previous docstring's explicit settings, other fields at default.
DOCSTRING_EXPLICIT = PREVIOUS | {"feedback": "explicit", "biases": True,
                                 "scale_regularization": True, "unobserved_weight": 0.003,
                                 "regularization": 0.25}
#: Proposed defaults, chosen on the validation carves only (``--parts search-explicit,
#: search-implicit``; never on a test part). Explicit: mean validation RMSE over the five carves
#: of u1…u5.base within 0.05 % of the grid's best (128 factors, w0 0.0003) at half its factors.
PROPOSED_EXPLICIT = PREVIOUS | {"feedback": "explicit", "biases": True,
                                "scale_regularization": True, "alpha": 1.0,
                                "regularization": 0.13, "unobserved_weight": 0.001,
                                "factors": 64, "iterations": 15}
#: Implicit with today's confidence ``w0 + α r``: the best worst case over the three kinds.
PROPOSED_IMPLICIT = PREVIOUS | {"alpha": 1.5, "item_weight_exponent": 0.3}
#: Implicit with the confidence on ``r / r̄``: the same criterion.
PROPOSED_SCALED = PREVIOUS | {"factors": 64, "regularization": 60.0, "alpha": 10.0,
                              "item_weight_exponent": 0.3, "confidence": "scaled"}
#: The explicit tuner's fixed fields: everything it does not search.
TUNE_EXPLICIT = {k: v for k, v in PROPOSED_EXPLICIT.items()
                 if k not in WALS.search_space({"feedback": "explicit"})}
TUNE_IMPLICIT = {k: v for k, v in PROPOSED_IMPLICIT.items()
                 if k not in WALS.search_space({"feedback": "implicit"})}


#: The two confidences measured: on ``r`` (``"raw"``, before this study) and on ``r / r̄``.
CONFIDENCE = {"wals": "raw", "wals-scaled": "scaled"}


def _wals(name: str, params: dict[str, Any]) -> WALS:
    """``wals`` (confidence on ``r``) or ``wals-scaled`` (on ``r / r̄``) with ``params``."""
    return WALS(**(params | {"confidence": CONFIDENCE[name]}))


# -- data ---------------------------------------------------------------------------------------


def _prepared(dataset: Dataset, split: Split) -> Prepared:
    """Training data from the split's train part over the whole catalogue, as ``prepare`` does."""
    test_items = np.asarray(split.test["item_id"].unique(), dtype=object)
    return Prepared(training_data(dataset, split.train, extra_items=test_items), split)


def _pairs(path: Path) -> pd.MultiIndex:
    frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "time"], dtype=str)
    return pd.MultiIndex.from_arrays([frame["user"], frame["item"]])


def explicit_fold(dataset: Dataset, interactions: pd.DataFrame, folder: Path,
                  k: int) -> tuple[Prepared, Prepared]:
    """``u{k}.base`` / ``u{k}.test`` as pairs of the loaded dataset, and a carve of the base."""
    key = pd.MultiIndex.from_frame(interactions[["user_id", "item_id"]])
    train = interactions[key.isin(_pairs(folder / f"u{k}.base"))].reset_index(drop=True)
    test = interactions[key.isin(_pairs(folder / f"u{k}.test"))].reset_index(drop=True)
    outer = _prepared(dataset, Split(train, test, description={"fold": f"u{k}"}))
    inner = carve_validation(dataset, outer, "stratified", test_fraction=0.2, seed=SEED)
    return outer, inner


def implicit_kind(kind: str, datasets: Path) -> tuple[Prepared, Prepared]:
    """The stratified 75/25 split (seed 42) of one kind of feedback, and its validation carve."""
    if kind == "count":
        dataset, _ = load_dataset("lastfm-2k", datasets / "hetrec2011-lastfm-2k")
    else:
        dataset, _ = load_dataset("movielens-100k", datasets / "ml-100k")
    interactions = aggregate(dataset.events, dataset.schema)
    if kind == "binary":
        interactions = interactions.assign(feedback=1.0)
    outer = _prepared(dataset, make_split(interactions, "stratified", test_fraction=0.25,
                                          seed=SEED))
    inner = carve_validation(dataset, outer, "stratified", test_fraction=0.25, seed=SEED)
    return outer, inner


# -- measuring -----------------------------------------------------------------------------------


def score(model: Recommender, prepared: Prepared, metric: str) -> float:
    """``metric`` of ``model`` fitted on ``prepared``'s training part, on its test part."""
    result = evaluate({"m": model}, prepared.data, prepared.split, ks=[10], curve_ks=[10])
    return float(result.models["m"].metrics[metric])


@dataclass
class Row:
    """One model's figures per column, on the test parts and on the validation carves."""

    model: str
    test: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _short(params: dict[str, Any], fixed: dict[str, Any]) -> str:
    """The searched parameters, briefly."""
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items() if k not in fixed)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _measure(rows: dict[str, Row], models: dict[str, Callable[[], Recommender]], column: str,
             outer: Prepared, inner: Prepared, metric: str) -> None:
    """Every untuned model on the validation carve and on the test part."""
    for name, make in models.items():
        rows[name].validation[column] = score(make(), inner, metric)
        rows[name].test[column] = score(make(), outer, metric)


def _tuned(row: Row, name: str, column: str, outer: Prepared, inner: Prepared,
           fixed: dict[str, Any], metric: str, trials: int) -> None:
    """Tune on the carve, then fit the best on the training part and score it on the test."""
    start = time.perf_counter()
    fixed = fixed | {"confidence": CONFIDENCE[name]}
    result = tune("wals", inner.data, inner.split, fixed=fixed, metric=metric, trials=trials,
                  seed=SEED)
    row.validation[column] = result.best_value
    row.test[column] = score(_wals(name, result.best_params), outer, metric)
    row.notes.append(f"{column}: {_short(result.best_params, fixed)}")
    _log(f"{column}: {row.model} in {time.perf_counter() - start:.0f} s: {row.notes[-1]}")


def _report(rows: dict[str, Row], column: str) -> None:
    _log(f"{column}: " + ", ".join(f"{r.model} {r.validation[column]:.4f} / {r.test[column]:.4f}"
                                   for r in rows.values() if column in r.test))


def explicit_rows(datasets: Path, folds: tuple[int, ...], trials: int) -> list[Row]:
    """RMSE on each fold (validation carve of ``u{k}.base``, and ``u{k}.test``), and the mean."""
    dataset, _ = load_dataset("movielens-100k", datasets / "ml-100k")
    interactions = aggregate(dataset.events, dataset.schema)
    models: dict[str, Callable[[], Recommender]] = {
        'WALS(feedback="explicit") as installed': lambda: WALS(feedback="explicit"),
        "previous docstring settings": lambda: WALS(**DOCSTRING_EXPLICIT),
        "proposed explicit defaults": lambda: WALS(**PROPOSED_EXPLICIT),
        "bias": Bias,
    }
    rows = {name: Row(name) for name in [*models, "WALS tuned"]}
    for k in folds:
        column = f"u{k}"
        outer, inner = explicit_fold(dataset, interactions, datasets / "ml-100k", k)
        _measure(rows, models, column, outer, inner, "rmse")
        _tuned(rows["WALS tuned"], "wals", column, outer, inner, TUNE_EXPLICIT, "rmse", trials)
        _report(rows, column)
    for row in rows.values():
        for values in (row.test, row.validation):
            values["mean"] = float(np.mean([values[f"u{k}"] for k in folds]))
    return list(rows.values())


def implicit_rows(datasets: Path, kinds: tuple[str, ...], trials: int,
                  scaled: bool) -> list[Row]:
    """nDCG@10 on each kind of feedback (validation carve, and test part)."""
    models: dict[str, Callable[[], Recommender]] = {
        "WALS() as installed": WALS,
        "previous defaults": lambda: WALS(**PREVIOUS),
        "proposed defaults, confidence on r": lambda: WALS(**PROPOSED_IMPLICIT),
        "popularity": Popularity,
    }
    if scaled:
        models["proposed defaults, confidence on r / r̄ (wals-scaled)"] = (
            lambda: _wals("wals-scaled", PROPOSED_SCALED))
    tuned_names = ["wals", "wals-scaled"] if scaled else ["wals"]
    rows = {name: Row(name) for name in [*models, *(f"{n} tuned" for n in tuned_names)]}
    for kind in kinds:
        outer, inner = implicit_kind(kind, datasets)
        _measure(rows, models, kind, outer, inner, "ndcg@10")
        for name in tuned_names:
            _tuned(rows[f"{name} tuned"], name, kind, outer, inner, TUNE_IMPLICIT, "ndcg@10",
                   trials)
        _report(rows, kind)
    return list(rows.values())


def table(title: str, columns: list[str], rows: list[Row]) -> str:
    """Test figures, then the same on the validation carves, then the tuned parameters."""
    head = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]

    def cells(values: dict[str, float]) -> str:
        return " | ".join(f"{values[c]:.4f}" if c in values else "–" for c in columns)

    lines = [f"### {title}", "", "Test parts:", "", *head]
    lines += [f"| {r.model} | {cells(r.test)} |" for r in rows]
    lines += ["", "Validation carves (where the defaults were chosen):", "", *head]
    lines += [f"| {r.model} | {cells(r.validation)} |" for r in rows]
    notes = [f"- {r.model}: {'; '.join(r.notes)}" for r in rows if r.notes]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


#: The grids the proposed defaults were picked from (validation carves only).
EXPLICIT_GRID = {"factors": (16, 32, 64, 128), "regularization": (0.05, 0.08, 0.1, 0.13, 0.15, 0.2),
                 "unobserved_weight": (0.0003, 0.001, 0.003, 0.01)}
IMPLICIT_GRIDS = {
    "wals": {"factors": (32, 64), "regularization": (10.0, 20.0, 30.0, 50.0),
             "alpha": (0.5, 1.0, 1.5, 2.0, 4.0), "item_weight_exponent": (0.0, 0.3)},
    "wals-scaled": {"factors": (32, 64), "regularization": (30.0, 60.0, 100.0),
                    "alpha": (4.0, 6.0, 8.0, 10.0, 12.0, 16.0),
                    "item_weight_exponent": (0.0, 0.3)},
}


def _grid(space: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in space.items():
        points = [p | {key: v} for p in points for v in values]
    return points


def search_explicit(datasets: Path, folds: tuple[int, ...], top: int) -> str:
    """Mean validation RMSE over the folds' carves for every grid point; the best first."""
    dataset, _ = load_dataset("movielens-100k", datasets / "ml-100k")
    interactions = aggregate(dataset.events, dataset.schema)
    carves = [explicit_fold(dataset, interactions, datasets / "ml-100k", k)[1] for k in folds]
    results = []
    for point in _grid(EXPLICIT_GRID):
        params = PROPOSED_EXPLICIT | point
        results.append((float(np.mean([score(WALS(**params), c, "rmse") for c in carves])),
                        point))
    results.sort(key=lambda r: r[0])
    lines = ["### Search: explicit, mean validation RMSE over the carves of "
             + ", ".join(f"u{k}.base" for k in folds), "",
             f"{len(results)} points of {EXPLICIT_GRID} (other fields as proposed); best first:",
             "", "| validation RMSE | parameters |", "|---|---|"]
    lines += [f"| {v:.4f} | {_short(point, {})} |" for v, point in results[:top]]
    return "\n".join(lines) + "\n"


def search_implicit(datasets: Path, kinds: tuple[str, ...], top: int) -> str:
    """Validation nDCG@10 of every grid point on every kind; ranked by the worst kind's share
    of the best validation figure any point reached on that kind."""
    splits = {kind: implicit_kind(kind, datasets) for kind in kinds}
    carves = {kind: inner for kind, (_, inner) in splits.items()}
    results = []
    for name, space in IMPLICIT_GRIDS.items():
        base = PROPOSED_SCALED if name == "wals-scaled" else PROPOSED_IMPLICIT
        for point in _grid(space):
            values = {kind: score(_wals(name, base | point), carve, "ndcg@10")
                      for kind, carve in carves.items()}
            results.append((name, point, values))
    best = {kind: max(v[kind] for _, _, v in results) for kind in kinds}
    ranked = sorted(results, key=lambda r: -min(r[2][k] / best[k] for k in kinds))
    lines = ["### Search: implicit, validation nDCG@10 (share of the best point per kind)", "",
             f"{len(results)} points (other fields as proposed); ranked by the worst kind:", "",
             "| model | parameters | " + " | ".join(kinds) + " | worst |",
             "|---|---|" + "---|" * (len(kinds) + 1)]
    for name, point, values in ranked[:top]:
        cells = " | ".join(f"{values[k]:.4f} ({values[k] / best[k]:.3f})" for k in kinds)
        lines.append(f"| {name} | {_short(point, {})} | {cells} | "
                     f"{min(values[k] / best[k] for k in kinds):.3f} |")
    lines.append("")
    for kind in kinds:  # the grid as a tuner: each kind's best validation point, on its test
        name, point, values = max(results, key=lambda r: r[2][kind])
        base = PROPOSED_SCALED if name == "wals-scaled" else PROPOSED_IMPLICIT
        test = score(_wals(name, base | point), splits[kind][0], "ndcg@10")
        lines.append(f"- best on {kind} alone: {name}, {_short(point, {})}: validation "
                     f"{values[kind]:.4f}, test {test:.4f}")
    for name in IMPLICIT_GRIDS:
        _, point, values = next(r for r in ranked if r[0] == name)
        shares = ", ".join(f"{k} {values[k]:.4f} ({values[k] / best[k]:.3f})" for k in kinds)
        lines.append(f"- best {name}: {_short(point, {})}: {shares}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="explicit,implicit",
                        help="comma-separated: explicit, implicit (default configurations "
                             "against tuned), search-explicit, search-implicit (the validation "
                             "grids the proposed defaults come from)")
    parser.add_argument("--top", type=int, default=10, help="grid points shown by the searches")
    parser.add_argument("--folds", default="1,2,3,4,5", help="MovieLens 100K folds (explicit)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="binary, star, count")
    parser.add_argument("--trials", type=int, default=30, help="tuning budget per fold / kind")
    parser.add_argument("--no-scaled", action="store_true",
                        help="leave out wals-scaled (confidence on r / mean r)")
    parser.add_argument("--datasets-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    folds = tuple(int(f) for f in args.folds.split(","))
    kinds = tuple(args.kinds.split(","))
    out = [f"```\npython benchmarks/bench_defaults.py {' '.join(sys.argv[1:])}\n```\n"]
    if parts & {"explicit", "implicit"}:
        out.append(f"Tuning budget: {args.trials} trials per fold / feedback kind (optuna "
                   f"multivariate TPE, seed {SEED}), on validation carves of the training parts "
                   "only.\n")
    with threadpool_limits(1, user_api="blas"):
        if "explicit" in parts:
            rows = explicit_rows(args.datasets_dir, folds, args.trials)
            out.append(table("Explicit: MovieLens 100K test RMSE (lower is better)",
                             [*(f"u{k}" for k in folds), "mean"], rows))
        if "implicit" in parts:
            rows = implicit_rows(args.datasets_dir, kinds, args.trials, not args.no_scaled)
            out.append(table("Implicit: test nDCG@10 (higher is better)", list(kinds), rows))
        if "search-explicit" in parts:
            out.append(search_explicit(args.datasets_dir, folds, args.top))
        if "search-implicit" in parts:
            out.append(search_implicit(args.datasets_dir, kinds, args.top))
    text = "\n".join(out)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()

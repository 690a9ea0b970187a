"""Explicit ratings on MovieLens 100K folds u1…u5: the hybrid's rating head against tuned
single models, Surprise's SVD among them, every one tuned the same way.

Each single model (explicit WALS, kNN with baselines, Surprise's SVD) is tuned with the same
budget (``--trials`` optuna TPE trials, seed 42, the first trial at the model's defaults) for
RMSE on one validation carve: 20 % of each user's ratings in ``u1.base``, never a test part.
The best parameters are then fitted on each ``u{k}.base`` and scored on ``u{k}.test``. The
hybrid runs at its defaults with the rating head switched on (its sources at their defaults:
it is not tuned, so the comparison is tuned single models against an untuned hybrid)::

    python benchmarks/bench_ratings.py --trials 40

Needs the ``bench`` extra's scikit-surprise for the SVD row (left out, with a line saying so,
when it is not installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench_defaults import SEED, TUNE_EXPLICIT, explicit_fold, score
from recengine.data.loaders import load_dataset
from recengine.data.weighting import aggregate
from recengine.models import WALS, Bias, KNNBaseline, Recommender
from recengine.models.hybrid import Hybrid
from recengine.pipeline.prepare import Prepared
from recengine.pipeline.tune import tune

#: Surprise's SVD search space (its defaults: 100 factors, 20 epochs, lr 0.005, reg 0.02).
SVD_SPACE = {"n_factors": ("int", 10, 200, True), "n_epochs": ("int", 10, 60, False),
             "lr_all": ("float", 1e-3, 3e-2, True), "reg_all": ("float", 5e-3, 0.3, True)}
SVD_DEFAULTS = {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02}


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _frame(prepared: Prepared, part: str) -> pd.DataFrame:
    frame = getattr(prepared.split, part)
    return frame[frame["rating"].notna()][["user_id", "item_id", "rating"]]


def svd_rmse(params: dict[str, Any], prepared: Prepared) -> float:
    """Surprise's SVD with ``params`` fitted on the split's train part, RMSE on its test part
    (unknown users or items get Surprise's own fallback, the global mean)."""
    from surprise import SVD, Dataset, Reader

    train = _frame(prepared, "train")
    data = Dataset.load_from_df(train, Reader(rating_scale=(1, 5)))
    model = SVD(random_state=SEED, **params).fit(data.build_full_trainset())
    test = _frame(prepared, "test")
    predicted = np.array([model.predict(str(u), str(i)).est for u, i in
                          zip(test["user_id"], test["item_id"], strict=True)])
    return float(np.sqrt(np.mean((predicted - test["rating"].to_numpy()) ** 2)))


def tune_svd(inner: Prepared, trials: int) -> tuple[dict[str, Any], float]:
    """The SVD parameters with the lowest validation RMSE, searched as ``tune`` searches ours."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=SEED, multivariate=True)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(SVD_DEFAULTS)

    def objective(trial: Any) -> float:
        params = {name: (trial.suggest_int if kind == "int" else trial.suggest_float)(
            name, low, high, log=log) for name, (kind, low, high, log) in SVD_SPACE.items()}
        return svd_rmse(params, inner)

    study.optimize(objective, n_trials=trials)
    return study.best_params, float(study.best_value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets-dir", type=Path, default=Path(os.environ.get(
        "RECENGINE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")))
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    folds = [int(f) for f in args.folds.split(",")]
    dataset, _ = load_dataset("movielens-100k", args.datasets_dir / "ml-100k")
    interactions = aggregate(dataset.events, dataset.schema)
    _, carve = explicit_fold(dataset, interactions, args.datasets_dir / "ml-100k", 1)

    makers: dict[str, Callable[[], Recommender]] = {"bias": Bias}
    validation: dict[str, float] = {}
    notes: dict[str, str] = {}
    for name, fixed in (("wals", TUNE_EXPLICIT), ("knn-baseline", {})):
        start = time.perf_counter()
        result = tune(name, carve.data, carve.split, fixed=fixed, metric="rmse",
                      trials=args.trials, seed=SEED)
        label = f"{name} tuned"
        params = result.best_params
        makers[label] = (lambda p=params, n=name: WALS(**p) if n == "wals" else KNNBaseline(**p))
        validation[label] = result.best_value
        notes[label] = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in params.items() if k not in fixed)
        _log(f"{label}: validation RMSE {result.best_value:.4f} in "
             f"{time.perf_counter() - start:.0f} s ({notes[label]})")
    svd: dict[str, Any] | None = None
    try:
        svd, validation["surprise SVD tuned"] = tune_svd(carve, args.trials)
        notes["surprise SVD tuned"] = ", ".join(f"{k}={v:.4g}" for k, v in svd.items())
        _log(f"surprise SVD tuned: validation RMSE {validation['surprise SVD tuned']:.4f} "
             f"({notes['surprise SVD tuned']})")
    except ImportError:
        _log("scikit-surprise is not installed: no SVD row (pip install scikit-surprise)")
    makers["hybrid (rating head, defaults)"] = lambda: Hybrid(ratings={})

    rows: dict[str, dict[str, float]] = {name: {} for name in makers}
    if svd is not None:
        rows["surprise SVD tuned"] = {}
    for k in folds:
        outer, _ = explicit_fold(dataset, interactions, args.datasets_dir / "ml-100k", k)
        for name, make in makers.items():
            start = time.perf_counter()
            rows[name][f"u{k}"] = score(make(), outer, "rmse")
            _log(f"u{k} {name}: {rows[name][f'u{k}']:.4f} ({time.perf_counter() - start:.0f} s)")
        if svd is not None:
            rows["surprise SVD tuned"][f"u{k}"] = svd_rmse(svd, outer)
    columns = [f"u{k}" for k in folds]
    print(f"RMSE, MovieLens 100K folds ({args.trials} trials per tuned model on one carve of "
          "u1.base)\n")
    print("| model | validation | " + " | ".join(columns) + " | mean |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for name, values in rows.items():
        mean = float(np.mean([values[c] for c in columns]))
        cells = " | ".join(f"{values[c]:.4f}" for c in columns)
        tuned = f"{validation[name]:.4f}" if name in validation else "–"
        print(f"| {name} | {tuned} | {cells} | **{mean:.4f}** |")
    print()
    for name, note in notes.items():
        print(f"- {name}: {note}")


if __name__ == "__main__":
    main()

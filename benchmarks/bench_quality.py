"""Quality of tuned WALS against tuned implicit ALS, on the same split, in the same run.

Implicit feedback (MovieLens 100K ratings as feedback, Last.fm 2K play counts): both models are
tuned with the same optuna budget on a validation split carved from the training part only,
then refitted on the whole training part and scored once on the test part by the same
evaluator (full catalogue, seen items excluded). implicit is wrapped as a recengine model whose
confidence is ``1 + alpha · r``, so both optimise the same objective family.

Explicit ratings (MovieLens 100K folds u1…u5): explicit WALS is tuned for RMSE on a validation
split carved from ``u1.base`` only, then trained on each ``u{i}.base`` and scored on ``u{i}.test``.

    python benchmarks/bench_quality.py --trials 40
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recengine.data.loaders import load_dataset
from recengine.data.query import Queries
from recengine.data.splits import stratified
from recengine.data.training_data import TrainingData
from recengine.evaluation.evaluator import evaluate
from recengine.evaluation.metrics import rmse
from recengine.models import WALS, Popularity
from recengine.models.base import ModelConfig, Recommender, TrainingOptions
from recengine.models.registry import model_class
from recengine.pipeline.prepare import carve_validation, prepare
from recengine.pipeline.tune import tune
from recengine.progress import ProgressCallback

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"movielens-100k": "ml-100k", "lastfm-2k": "hetrec2011-lastfm-2k"}


class ImplicitALS(Recommender):
    """implicit's CPU ALS behind recengine's interface, fed ``C = 1 + alpha · r``."""

    name = "implicit-als"

    class Config(ModelConfig):  # the same defaults as WALS: both searches start there
        factors: int = 32
        regularization: float = 30.0
        alpha: float = 1.0
        iterations: int = 15
        random_state: int = 0
        num_threads: int = 2

    config: Config
    state = ("user_factors_", "item_factors_")

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space = WALS.search_space(fixed)
        space.pop("item_weight_exponent", None)
        return space

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        confidence = sp.csr_matrix(data.feedback, dtype=np.float32)
        confidence.data = 1.0 + cfg.alpha * confidence.data
        model = AlternatingLeastSquares(
            factors=cfg.factors, regularization=cfg.regularization, alpha=1.0,
            iterations=cfg.iterations, random_state=options.seed_or(cfg.random_state),
            num_threads=cfg.num_threads, calculate_training_loss=False)
        model.fit(confidence, show_progress=False)
        return {"user_factors_": model.user_factors, "item_factors_": model.item_factors}

    def _score(self, queries: Queries) -> np.ndarray:
        return self.user_factors_[queries.users] @ self.item_factors_.T


def implicit_feedback(name: str, folder: Path, trials: int, seed: int,
                      n_seeds: int) -> list[dict]:
    """Tune both on validation, then fit on train (several seeds) and score on test."""
    dataset, _ = load_dataset(name, folder)
    outer = prepare(dataset, "stratified", test_fraction=0.25, seed=seed)
    inner = carve_validation(dataset, outer, "stratified", test_fraction=0.25, seed=seed)
    rows = []
    tuned = {}
    for model in ("wals", ImplicitALS.key()):
        result = tune(model, inner.data, inner.split, trials=trials, seed=seed,
                      fixed={"num_threads": 2})
        tuned[model] = result
        print(f"  {name}: {model} best validation ndcg@10 {result.best_value:.4f} "
              f"{result.best_params}", file=sys.stderr, flush=True)
    runs: dict[str, list[dict[str, float]]] = {}
    for run in range(n_seeds):  # initial factors differ by seed: report the spread
        models = {"popularity": Popularity()} | {
            m: model_class(m)(**(r.best_params | {"random_state": run}))
            for m, r in tuned.items()}
        final = evaluate(models, outer.data, outer.split, ks=[10], curve_ks=[10])
        for model, res in final.models.items():
            runs.setdefault(model, []).append(res.metrics)
    for model, metrics in runs.items():
        row = {"dataset": name, "model": model,
               "validation ndcg@10": tuned[model].best_value if model in tuned else None,
               "params": tuned[model].best_params if model in tuned else {}}
        for key in ("precision@10", "recall@10", "ndcg@10", "map@10"):
            values = np.array([m[key] for m in metrics])
            row[key] = (float(values.mean()), float(values.std()))
        rows.append(row)
    return rows


def _fold(folder: Path, name: str) -> pd.DataFrame:
    frame = pd.read_csv(folder / name, sep="\t", names=["user_id", "item_id", "rating", "t"],
                        dtype={"user_id": str, "item_id": str})
    return frame.assign(feedback=1.0, timestamp=pd.NaT)


def explicit_folds(folder: Path, trials: int, seed: int) -> dict:
    """Explicit WALS tuned on part of u1.base, then RMSE on every u{i}.test."""
    fixed = {"feedback": "explicit", "biases": True, "scale_regularization": True,
             "solver": "cholesky", "num_threads": 2}
    base = _fold(folder, "u1.base")
    inner = stratified(base, 0.2, seed=seed)
    data = TrainingData.from_interactions(inner.train, extra_items=inner.test["item_id"].unique())
    result = tune("wals", data, inner, fixed=fixed, metric="rmse", trials=trials, seed=seed)
    print(f"  explicit: best validation rmse {result.best_value:.4f} {result.best_params}",
          file=sys.stderr, flush=True)
    per_fold = []
    for i in range(1, 6):
        train, test = _fold(folder, f"u{i}.base"), _fold(folder, f"u{i}.test")
        data = TrainingData.from_interactions(train, extra_items=test["item_id"].unique())
        model = WALS(**result.best_params).fit(data)
        pred = model.score(test["user_id"], test["item_id"])
        pred = np.clip(np.where(np.isnan(pred), float(model.global_mean_), pred), 1, 5)
        per_fold.append(rmse(pred, test["rating"].to_numpy()))
    return {"params": result.best_params, "validation_rmse": result.best_value,
            "rmse_per_fold": per_fold, "rmse_mean": float(np.mean(per_fold))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--datasets-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--seeds", type=int, default=5,
                        help="refits of each tuned model with different initial factors")
    parser.add_argument("--skip-explicit", action="store_true")
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_quality.py {' '.join(sys.argv[1:])}\n```\n")
    with threadpool_limits(1, user_api="blas"):
        rows = []
        for name, folder in DATASETS.items():
            rows += implicit_feedback(name, args.datasets_dir / folder, args.trials, args.seed,
                                      args.seeds)
        print(f"Test metrics: mean ± std over {args.seeds} seeds of the initial factors.\n")
        print("| dataset | model | validation ndcg@10 | precision@10 | recall@10 | ndcg@10 | "
              "map@10 | tuned parameters |\n|---|---|---|---|---|---|---|---|")
        for r in rows:
            val = "–" if r["validation ndcg@10"] is None else f"{r['validation ndcg@10']:.4f}"
            params = {k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in r["params"].items() if k != "num_threads"}
            cells = " | ".join(f"{r[k][0]:.4f} ± {r[k][1]:.4f}"
                               for k in ("precision@10", "recall@10", "ndcg@10", "map@10"))
            print(f"| {r['dataset']} | {r['model']} | {val} | {cells} | {params} |")
        if not args.skip_explicit:
            res = explicit_folds(args.datasets_dir / "ml-100k", args.trials, args.seed)
            folds = ", ".join(f"{v:.4f}" for v in res["rmse_per_fold"])
            print(f"\nExplicit WALS, MovieLens 100K u1…u5: mean RMSE {res['rmse_mean']:.4f} "
                  f"(folds: {folds}); validation RMSE on u1.base {res['validation_rmse']:.4f}; "
                  f"parameters {res['params']}")


if __name__ == "__main__":
    main()

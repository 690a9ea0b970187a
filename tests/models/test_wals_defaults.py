"""WALS's defaults on real data: explicit WALS needs nothing but ``feedback="explicit"``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.training_data import TrainingData
from recengine.evaluation.metrics import rmse
from recengine.models import WALS, Bias


def _fold(folder: Path, name: str) -> pd.DataFrame:
    frame = pd.read_csv(folder / name, sep="\t", names=["user_id", "item_id", "rating", "t"],
                        dtype={"user_id": str, "item_id": str})
    return frame.assign(feedback=frame["rating"].astype(float))


def test_explicit_defaults_predict_ratings_on_movielens_u1(
        require_dataset: Callable[[str], Path]) -> None:
    """Only feedback="explicit": RMSE 2.55 before the defaults depended on the feedback; the
    bias baseline gets 0.95 on this fold, tuned WALS about 0.92 (docs/defaults-study.md)."""
    folder = require_dataset("ml-100k")
    train, test = _fold(folder, "u1.base"), _fold(folder, "u1.test")
    data = TrainingData.from_interactions(train, extra_items=test["item_id"].unique())
    scores = {}
    for name, model in (("wals", WALS(feedback="explicit")), ("bias", Bias())):
        predicted = model.fit(data).score(test["user_id"].tolist(), test["item_id"].tolist())
        known = np.isfinite(predicted)
        scores[name] = rmse(np.clip(predicted[known], 1, 5),
                            test["rating"].to_numpy(np.float64)[known])
    assert scores["wals"] < 0.94 and scores["wals"] < scores["bias"] - 0.01, scores

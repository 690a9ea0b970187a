"""A version trained on Spark (``recengine train --engine spark``) is published and served by
the ordinary server, which loads it without pyspark."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from recengine.cli import main
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry


def test_a_spark_trained_version_is_published_and_served(spark, capsys, tmp_path, monkeypatch,
                                                         require_dataset):
    ratings = pd.read_csv(require_dataset("ml-100k") / "u.data", sep="\t", header=None,
                          names=["user_id", "item_id", "value", "timestamp"])
    events = tmp_path / "ratings.csv"
    ratings.to_csv(events, index=False)
    config = tmp_path / "spark-als.json"
    config.write_text(json.dumps({"model": "spark-als",
                                  "config": {"factors": 16, "iterations": 5, "blocks": 2}}))
    folder = tmp_path / "spark-als"
    assert main(["train", "--events", str(events), "--engine", "spark", "--config", str(config),
                 "--output", str(folder)]) == 0
    assert "spark-als trained on 100000 pairs (943 users, 1682 items)" in capsys.readouterr().out
    registry = tmp_path / "registry"
    assert main(["models", "publish", str(folder), "--registry", str(registry), "--activate",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == "v0001"

    monkeypatch.setitem(sys.modules, "pyspark", None)  # serving needs no Spark
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        state = ServingState(ModelRegistry(registry), store)
        state.load_current()
        client = TestClient(create_app(Settings(), state))
        response = client.get("/v1/users/196/recommendations", params={"k": 10})
        model = state.active.model
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v0001" and body["count"] == 10
    assert {item["source"] for item in body["items"]} == {"spark-als"}
    served = [item["item_id"] for item in body["items"]]
    seen = set(ratings.loc[ratings["user_id"] == 196, "item_id"].astype(str))
    assert not seen & set(served)
    expected, scores = model.recommend("196", 10)
    assert served == expected.tolist()
    np.testing.assert_allclose([item["score"] for item in body["items"]], scores, rtol=1e-5)
    assert type(model).__name__ == "SparkALS" and model.user_factors_.shape == (943, 16)


def test_spark_als_trained_without_histories_never_brings_the_pairs_here(spark, capsys,
                                                                         tmp_path, monkeypatch):
    """`train --engine spark --no-histories`: spark-als fits from the pairs on Spark, and
    nothing collects them (collecting fails here); the folder answers by history."""
    import recengine.spark.prepare

    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 600)
    items = (users % 3) * 7 + rng.integers(0, 7, 600)  # three tastes of seven items
    events = tmp_path / "events.csv"
    pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items],
                  "event_type": "view"}).to_csv(events, index=False)

    def collected(pairs: object) -> None:
        raise AssertionError("the pairs were collected")

    monkeypatch.setattr(recengine.spark.prepare, "pairs_to_pandas", collected)
    folder = tmp_path / "spark-als"
    assert main(["train", "--events", str(events), "--engine", "spark", "--model", "spark-als",
                 "--no-histories", "--output", str(folder)]) == 0
    assert "pairs (30 users, 21 items) on Spark" in capsys.readouterr().out
    assert not (folder / "training-data").exists()
    assert main(["recommend", "--model-dir", str(folder), "--history", "i0,i1,i2", "--k", "3",
                 "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {int(item["item"][1:]) // 7 for item in answer["items"]} == {0}  # the same taste
    assert main(["recommend", "--model-dir", str(folder), "--user", "u1"]) == 2
    assert "holds no training histories (trained with --no-histories)" in capsys.readouterr().err

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

"""`recengine retrain --engine spark`: the event store's events, WALS trained on Spark as
spark-als, gated against the active version like any other candidate, and published."""

from __future__ import annotations

import json

import pytest

from recengine.cli import main
from recengine.data.synthetic import generate
from recengine.models.spark_als import SparkALS
from recengine.pipeline.retrain import on_engine
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry


@pytest.fixture
def store_url(tmp_path):
    """A SQLite event store holding a small synthetic log (with timestamps: a time holdout)."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with EventStore(url) as store:
        store.append(generate(n_users=150, n_items=60, seed=5).events)
    return url


def retrain(capsys, *argv: str) -> str:
    assert main(["retrain", *argv]) == 0
    return capsys.readouterr().out


def test_a_spark_retrain_is_gated_and_published(spark, capsys, tmp_path, store_url):
    config = tmp_path / "wals.json"
    config.write_text(json.dumps({"model": "wals", "config": {
        "factors": 8, "iterations": 3, "blocks": 2}}))
    registry = tmp_path / "registry"
    base = ["--store", store_url, "--registry", str(registry), "--config", str(config)]
    local = json.loads(config.read_text())
    local["config"].pop("blocks")
    local_config = tmp_path / "local-wals.json"
    local_config.write_text(json.dumps(local))
    out = retrain(capsys, "--store", store_url, "--registry", str(registry), "--config",
                  str(local_config))
    assert out.startswith("published and activated v0001")

    # The current version is a local WALS: its configuration is re-trained on the same split.
    out = retrain(capsys, *base, "--engine", "spark", "--master", "local[2]",
                  "--tolerance", "0.99")
    assert out.startswith("published and activated v0002") and "current v0001" in out
    versions = ModelRegistry(registry)
    manifest = versions.show("v0002")
    entry = manifest["models"]["wals"]
    assert entry["model"] == "spark-als" and entry["config"]["master"] == "local[2]"
    assert entry["config"]["factors"] == 8
    assert "trained on Spark (local[2]) as spark-als: wals" in manifest["notes"]
    assert "v0001's wals (wals) re-trained on the same training part" in manifest["notes"]
    with EventStore(store_url) as store:
        assert manifest["data"] == store.snapshot()
    served = versions.load()
    assert isinstance(served, SparkALS)
    assert len(served.recommend(str(served.users_.ids[0]), 5)[0]) == 5

    # Against itself, a candidate that must beat it by 100 % is rejected: nothing published.
    out = retrain(capsys, *base, "--engine", "spark", "--tolerance", "-1")
    assert out.startswith("not published") and "< current v0002" in out
    assert out.rstrip().endswith("kept v0002")
    assert sorted(versions.versions()) == ["v0001", "v0002"] and versions.current() == "v0002"


def test_on_spark_only_wals_moves():
    models = {"wals": {"factors": 8}, "tuned": {"model": "wals"}, "pop": {},
              "ease": {"model": "ease"}}
    assert on_engine(models, "spark", "spark://h:7077") == {
        "wals": {"factors": 8, "model": "spark-als", "master": "spark://h:7077"},
        "tuned": {"model": "spark-als", "master": "spark://h:7077"},
        "pop": {}, "ease": {"model": "ease"}}
    assert on_engine(models) == models

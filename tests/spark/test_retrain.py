"""`recengine retrain --engine spark`: the events prepared, split and scored on Spark (a
PostgreSQL store read over JDBC), WALS trained on Spark as spark-als, gated against the active
version like any other candidate, published and served; the scores those of the local retrain."""

from __future__ import annotations

import json
import sys

import pytest
from fastapi.testclient import TestClient

from recengine.cli import main
from recengine.data.loaders import load_dataset
from recengine.data.synthetic import generate
from recengine.models import Popularity
from recengine.models.spark_als import SparkALS
from recengine.pipeline.isolated import retrain_until
from recengine.pipeline.retrain import on_engine
from recengine.pipeline.retrain import retrain as run_retrain
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.spark.evaluation import METRICS
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


@pytest.fixture
def postgres_store(postgres_url):
    """A PostgreSQL event store holding the small synthetic log, read by Spark over JDBC."""
    with EventStore(postgres_url) as store:
        store.append(generate(n_users=150, n_items=60, seed=5).events)
    return postgres_url


def never_loaded_here(*args, **kwargs):
    raise AssertionError("a retrain on Spark loaded the store's events into this process")


def test_a_spark_retrain_of_a_postgresql_store_reads_it_over_jdbc_and_is_served(
        spark, capsys, tmp_path, monkeypatch, postgres_store):
    """Through the command line: the events never loaded here (read over JDBC), the version
    gated, published with the store's snapshot, served by the ordinary server; then a
    candidate that must beat it by 100 % is rejected."""
    config = tmp_path / "wals.json"
    config.write_text(json.dumps({"model": "wals", "config": {
        "factors": 8, "iterations": 3, "blocks": 2}}))
    registry = tmp_path / "registry"
    base = ["--store", postgres_store, "--registry", str(registry), "--config", str(config),
            "--engine", "spark"]
    with monkeypatch.context() as patched:
        patched.setattr(EventStore, "dataset", never_loaded_here)
        assert retrain(capsys, *base).startswith("published and activated v0001: first version")
        out = retrain(capsys, *base, "--tolerance", "-1")
    assert out.startswith("not published") and out.rstrip().endswith("kept v0001")
    versions = ModelRegistry(registry)
    assert versions.versions() == ["v0001"]
    manifest = versions.show("v0001")
    assert manifest["models"]["wals"]["model"] == "spark-als"
    notes = manifest["notes"]
    assert "prepared, split and scored on Spark (local[2])" in notes
    assert "holdout: split=time, cutoff=" in notes
    with EventStore(postgres_store) as store:
        assert manifest["data"] == store.snapshot()
        monkeypatch.setitem(sys.modules, "pyspark", None)  # serving needs no Spark
        state = ServingState(versions, store)
        state.load_current()
        user = str(state.active.model.users_.ids[0])
        response = TestClient(create_app(Settings(), state)).get(
            f"/v1/users/{user}/recommendations", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v0001" and body["count"] == 5
    assert {item["source"] for item in body["items"]} == {"spark-als"}


def test_background_retraining_on_spark_reads_the_store_over_jdbc(spark, tmp_path,
                                                                   monkeypatch, postgres_store):
    """RECENGINE_RETRAIN_ENGINE=spark's runs (retrain_until, in the child or not) take the
    same path as the command line."""
    monkeypatch.setattr(EventStore, "dataset", never_loaded_here)
    registry = ModelRegistry(tmp_path / "registry")
    with EventStore(postgres_store) as store:
        outcome = retrain_until(store, registry, {"wals": {"factors": 8, "iterations": 3}},
                                store.last_id(), {"engine": "spark", "master": "local[2]"})
    assert outcome.activated and outcome.version == "v0001"
    assert registry.show("v0001")["models"]["wals"]["model"] == "spark-als"


@pytest.fixture(scope="module")
def movielens(require_dataset):
    return load_dataset("movielens-100k", require_dataset("ml-100k"), seed=42)[0]


def test_a_spark_retrain_scores_as_the_local_retrain(spark, tmp_path, movielens):
    """MovieLens 100K's time holdout carved on both engines and scored on both: the same
    holdout, and the same metrics for a model scored here (popularity, its lists made here)
    and for one scored on Spark (the current version's local WALS, re-trained on the split
    for the gate, its lists made by Spark's batch top-k)."""
    wals = {"wals": {"factors": 8, "iterations": 3}}
    popular = {"popular": {"model": "popularity"}}
    local_registry = ModelRegistry(tmp_path / "here")
    spark_registry = ModelRegistry(tmp_path / "spark")
    for registry in (local_registry, spark_registry):
        first = run_retrain(movielens, registry, models=wals, index_min_items=None)
        assert first.version == "v0001"
    here = run_retrain(movielens, local_registry, models=popular, tolerance=0.99,
                       index_min_items=None)
    there = run_retrain(movielens, spark_registry, models=popular, tolerance=0.99,
                        index_min_items=None, engine="spark")
    assert [n for n in there.notes if n.startswith("holdout: ")] == [
        n for n in here.notes if n.startswith("holdout: ")]
    assert there.current_metrics is not None and here.current_metrics is not None
    for metric in METRICS:
        for got, expected in ((there.metrics["popular"], here.metrics["popular"]),
                              (there.current_metrics, here.current_metrics)):
            assert got[f"{metric}@10"] == pytest.approx(expected[f"{metric}@10"], rel=1e-9,
                                                        abs=1e-12), metric
    assert there.current_metrics["ndcg@10"] > there.metrics["popular"]["ndcg@10"] > 0
    assert there.activated and spark_registry.current() == "v0002"
    assert isinstance(spark_registry.load("v0002"), Popularity)


def test_a_retrain_of_an_event_file_reports_bad_rows_alike_on_both_engines(spark, capfd,
                                                                           tmp_path):
    """`retrain --events FILE`: on Spark the file is read, validated, prepared and split
    there, with the local engine's report of its bad row (file, row, column) on stderr, and
    the verdict alone on stdout; a file missing a column ends both with the same one line."""
    events = generate(n_users=150, n_items=60, seed=5).events.drop(columns="device").assign(
        event_type="view", value=float("nan"))
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    with path.open("a") as file:
        file.write("u1,,view,,2024-01-01T00:00:00\n")
    bad_row = f"events.csv, row {len(events) + 2}, column 'item_id': missing item id"
    config = tmp_path / "wals.json"
    config.write_text(json.dumps({"model": "wals", "config": {"factors": 8, "iterations": 3}}))
    manifests = {}
    for engine in ("local", "spark"):
        registry = tmp_path / engine
        capfd.readouterr()
        assert main(["retrain", "--events", str(path), "--engine", engine, "--config",
                     str(config), "--registry", str(registry)]) == 0
        out, err = capfd.readouterr()
        assert out.startswith("published and activated v0001: first version")
        assert f"{len(events) + 1} rows read, {len(events)} accepted, 1 skipped" in err
        assert bad_row in err and "\tat " not in err
        manifests[engine] = ModelRegistry(registry).show("v0001")
    spark_data, local_data = manifests["spark"]["data"], manifests["local"]["data"]
    assert spark_data["dataset"] == local_data["dataset"] == str(path)
    for key in ("count", "min_timestamp", "max_timestamp"):
        assert spark_data[key] == local_data[key], key
    holdout = [[n for n in m["notes"].splitlines() if n.startswith("holdout: ")]
               for m in manifests.values()]
    assert holdout[0] == holdout[1] and holdout[0]
    assert "prepared, split and scored on Spark (local[2])" in manifests["spark"]["notes"]

    missing = tmp_path / "missing.csv"
    events.drop(columns="item_id").to_csv(missing, index=False)
    lines = {}
    for engine in ("local", "spark"):
        capfd.readouterr()
        assert main(["retrain", "--events", str(missing), "--engine", engine,
                     "--registry", str(tmp_path / "never")]) == 2
        err = capfd.readouterr().err
        assert "\tat " not in err and "Traceback" not in err
        lines[engine] = err.strip().splitlines()[-1]
    assert lines["spark"] == lines["local"]
    assert lines["local"].startswith(f"error: {missing}") and "item_id" in lines["local"]

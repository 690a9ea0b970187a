"""The model registry: immutable atomic versions, one atomic pointer, undo-stack rollbacks."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recengine.store.registry as registry_module
from recengine.data.training_data import TrainingData
from recengine.errors import ModelLoadError, ModelNotFoundError, NotFittedError
from recengine.models import Popularity, RandomItems
from recengine.models.base import Recommender
from recengine.store.registry import ModelRegistry, RegistryError


@pytest.fixture(scope="module")
def tiny() -> TrainingData:
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3", "u3"],
                          "item_id": ["a", "b", "a", "c", "a"],
                          "rating": float("nan"), "feedback": 1.0})
    return TrainingData.from_interactions(pairs)


@pytest.fixture
def fitted(tiny: TrainingData) -> Popularity:
    return Popularity().fit(tiny)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def publish(registry: ModelRegistry, model: Recommender, notes: str = "") -> str:
    return registry.publish({"popularity": model}, data={"count": 5, "sha256": "abc"},
                            metrics={"popularity": {"ndcg@10": 0.5}}, notes=notes)


def staged(registry: ModelRegistry) -> list[Path]:
    folder = registry.root / ".staging"
    return sorted(folder.iterdir()) if folder.exists() else []


# -- publish, list, show ----------------------------------------------------------------------
def test_publish_numbers_versions_and_does_not_activate(registry, fitted):
    first, second = publish(registry, fitted), publish(registry, fitted, notes="second run")
    assert (first, second) == ("v0001", "v0002")
    assert registry.current() is None
    assert registry.versions() == ["v0001", "v0002"]
    listed = registry.list()
    assert [m["version"] for m in listed] == ["v0002", "v0001"]  # newest first
    assert [m["active"] for m in listed] == [False, False]
    assert listed[0]["notes"] == "second run"


def test_show_returns_the_manifest(registry, fitted):
    version = publish(registry, fitted, notes="why")
    manifest = registry.show(version)
    assert manifest["version"] == version
    assert manifest["models"] == {"popularity": {"model": "popularity",
                                                 "config": fitted.config.model_dump(mode="json")}}
    assert manifest["data"] == {"count": 5, "sha256": "abc"}
    assert manifest["metrics"] == {"popularity": {"ndcg@10": 0.5}}
    assert manifest["notes"] == "why"
    assert manifest["active"] is False
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    on_disk = registry.root / "versions" / version
    assert (on_disk / "manifest.json").is_file()
    assert (on_disk / "popularity" / "model.json").is_file()
    assert (on_disk / "popularity" / "state.npz").is_file()


def test_manifest_is_strict_json(registry, fitted):
    version = registry.publish({"popularity": fitted},
                               data={"max_timestamp": pd.Timestamp("2025-01-02 03:04:05"),
                                     "count": np.int64(5)},
                               metrics={"popularity": {"ndcg@10": np.float32(0.25),
                                                       "rmse": float("nan")}})

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    text = (registry.root / "versions" / version / "manifest.json").read_text()
    manifest = json.loads(text, parse_constant=refuse)
    assert manifest["metrics"]["popularity"] == {"ndcg@10": 0.25, "rmse": None}
    assert manifest["data"] == {"max_timestamp": "2025-01-02T03:04:05", "count": 5}


def test_publish_checks_its_input(registry, fitted):
    with pytest.raises(RegistryError, match="nothing to publish"):
        registry.publish({}, data={}, metrics={})
    with pytest.raises(RegistryError, match="folder name"):
        registry.publish({"../escape": fitted}, data={}, metrics={})
    with pytest.raises(NotFittedError):
        registry.publish({"popularity": Popularity()}, data={}, metrics={})
    assert registry.list() == []
    assert staged(registry) == []


def test_a_missing_registry_reads_as_empty_and_is_not_created(tmp_path):
    registry = ModelRegistry(tmp_path / "nowhere")
    assert registry.current() is None
    assert registry.list() == []
    assert not registry.root.exists()


# -- activation and rollback ------------------------------------------------------------------
def test_activate_moves_the_pointer(registry, fitted):
    v1, v2 = publish(registry, fitted), publish(registry, fitted)
    registry.activate(v1)
    assert registry.current() == v1
    assert (registry.root / "CURRENT").read_text().strip() == v1
    registry.activate(v2)
    assert registry.current() == v2
    assert [(m["version"], m["active"]) for m in registry.list()] == [(v2, True), (v1, False)]
    assert registry.show(v2)["active"] is True
    history = [json.loads(line) for line in
               (registry.root / "history.jsonl").read_text().splitlines()]
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("activate", v1, None), ("activate", v2, v1)]


def test_rollback_undoes_activations_in_order(registry, fitted):
    v1, v2, v3 = (publish(registry, fitted) for _ in range(3))
    for version in (v1, v3, v2):  # activation order differs from version order
        registry.activate(version)
    assert registry.rollback() == v3
    assert registry.current() == v3
    assert registry.rollback() == v1
    assert registry.current() == v1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    assert registry.current() == v1


def test_rollback_after_rollback_then_activate(registry, fitted):
    v1, v2, v3 = (publish(registry, fitted) for _ in range(3))
    registry.activate(v1)
    registry.activate(v2)
    assert registry.rollback() == v1
    registry.activate(v3)
    assert registry.rollback() == v1  # v2 was undone, so it is not "before" v3


def test_rollback_skips_deleted_versions(registry, fitted):
    v1, v2, v3 = (publish(registry, fitted) for _ in range(3))
    for version in (v1, v2, v3):
        registry.activate(version)
    registry.delete(v2)
    assert registry.rollback() == v1


def test_rollback_needs_an_earlier_version(registry, fitted):
    with pytest.raises(RegistryError):
        registry.rollback()
    registry.activate(publish(registry, fitted))
    with pytest.raises(RegistryError):
        registry.rollback()


def test_a_failed_pointer_swap_keeps_the_old_version(registry, fitted, monkeypatch):
    v1, v2 = publish(registry, fitted), publish(registry, fitted)
    registry.activate(v1)

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.activate(v2)
    monkeypatch.undo()
    assert registry.current() == v1
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".CURRENT")] == []
    with pytest.raises(RegistryError):  # v2 was never logged as active
        registry.rollback()


def test_rollback_trusts_the_pointer_when_the_log_lags(registry, fitted):
    v1, v2, v3 = (publish(registry, fitted) for _ in range(3))
    for version in (v1, v2, v3):
        registry.activate(version)
    # A rollback to v2 that crashed after the pointer swap, before its log entry:
    (registry.root / "CURRENT").write_text(v2 + "\n")
    assert registry.rollback() == v1
    # An activation of v3 that crashed the same way:
    (registry.root / "CURRENT").write_text(v3 + "\n")
    assert registry.rollback() == v1


# -- atomic writes and concurrency ------------------------------------------------------------
def test_a_crash_before_the_rename_leaves_no_version(registry, fitted, monkeypatch):
    def crash(*args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="power cut"):
        publish(registry, fitted)
    monkeypatch.undo()
    assert registry.list() == []
    assert registry.versions() == []
    assert staged(registry) == []  # cleaned up
    version = publish(registry, fitted)
    assert registry.versions() == [version]


def test_a_hard_crash_leaves_only_an_unlisted_staging_folder(registry, fitted, monkeypatch):
    def crash(*args: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "rename", crash)
    monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)  # no cleanup: killed
    with pytest.raises(OSError):
        publish(registry, fitted)
    monkeypatch.undo()
    leftovers = staged(registry)
    assert len(leftovers) == 1 and (leftovers[0] / "popularity" / "state.npz").exists()
    assert registry.list() == []
    assert registry.versions() == []
    with pytest.raises(ModelNotFoundError):
        registry.load()


def test_concurrent_publishers_get_distinct_versions(registry, fitted, monkeypatch):
    real_fsync_dir = registry_module._fsync_dir

    def slow_fsync_dir(path: Path) -> None:  # widens the window between numbering and rename
        time.sleep(0.002)
        real_fsync_dir(path)

    monkeypatch.setattr(registry_module, "_fsync_dir", slow_fsync_dir)
    start = threading.Barrier(2)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        for _ in range(5):
            try:
                ids.append(publish(registry, fitted))
            except BaseException as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == 10 and len(set(ids)) == 10
    assert registry.versions() == [f"v{k:04d}" for k in range(1, 11)]
    assert sorted(m["version"] for m in registry.list()) == sorted(ids)


# -- errors, load, delete ---------------------------------------------------------------------
def test_unknown_versions_are_named_with_the_known_ones(registry, fitted):
    with pytest.raises(ModelNotFoundError, match="no versions yet"):
        registry.show("v0001")
    version = publish(registry, fitted)
    for call in (registry.show, registry.activate, registry.delete, registry.path,
                 lambda v: registry.load(v)):
        with pytest.raises(ModelNotFoundError, match=r"'v0042'.*known versions: v0001"):
            call("v0042")
    with pytest.raises(ModelNotFoundError):
        registry.show("../versions/" + version)


def test_load_round_trips_a_fitted_model(registry, fitted):
    version = publish(registry, fitted)
    with pytest.raises(ModelNotFoundError, match="no active version"):
        registry.load()
    registry.activate(version)
    loaded = registry.load()
    assert isinstance(loaded, Popularity)
    ids, scores = loaded.recommend(["u1", "u2"], n=2)
    expected_ids, expected_scores = fitted.recommend(["u1", "u2"], n=2)
    assert ids.tolist() == expected_ids.tolist()
    np.testing.assert_array_equal(scores, expected_scores)
    assert isinstance(registry.load(version, "popularity"), Popularity)
    with pytest.raises(ModelNotFoundError, match="no model 'wals'"):
        registry.load(version, "wals")


@pytest.mark.parametrize("name", ["../../../x", "/etc", "a/b", "data", ".hidden"])
def test_a_manifest_model_name_never_leads_outside_its_version(registry, fitted, name):
    """A tampered manifest naming ``../../../x`` (with a saved model there) is refused."""
    version = publish(registry, fitted)
    folder = registry.path(version)
    if name.startswith(".."):
        fitted.save(folder / name)  # a model waiting outside the registry
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"] = {name: manifest["models"]["popularity"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=f"{folder}: its manifest names a model "
                                             f"'{name}' (is not a plain|is reserved)"):
        registry.load(version)


def test_a_version_missing_its_files_is_refused_naming_them(registry, fitted, tiny):
    version = registry.publish({"popularity": fitted}, data={}, metrics={}, training=tiny)
    folder = registry.path(version)
    (folder / "data" / "matrices.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=f"{folder / 'data'}: version {version}'s training"):
        registry.load(version)
    shutil.rmtree(folder / "data")
    shutil.rmtree(folder / "popularity")
    with pytest.raises(ModelLoadError, match="lists model 'popularity', but no saved model at"):
        registry.load(version)


def test_load_defaults_to_the_first_model(registry, fitted, tiny):
    version = registry.publish({"random": RandomItems().fit(tiny), "popularity": fitted},
                               data={}, metrics={})
    assert isinstance(registry.load(version), RandomItems)
    assert isinstance(registry.load(version, "popularity"), Popularity)


def test_delete_refuses_the_active_version(registry, fitted):
    v1, v2 = publish(registry, fitted), publish(registry, fitted)
    registry.activate(v1)
    with pytest.raises(RegistryError, match="active"):
        registry.delete(v1)
    registry.delete(v2)
    assert [m["version"] for m in registry.list()] == [v1]
    assert not (registry.root / "versions" / v2).exists()
    assert staged(registry) == []
    assert publish(registry, fitted) == "v0003"  # a deleted id is never reused


def test_metrics_keep_their_values(registry, fitted):
    version = registry.publish({"popularity": fitted}, data={},
                               metrics={"popularity": {"ndcg@10": 1 / 3}})
    assert math.isclose(registry.show(version)["metrics"]["popularity"]["ndcg@10"], 1 / 3)

"""A model written outside the package, named by its import path, goes everywhere a built-in
one goes: evaluation, saving, the registry, a retrain in the child process, and serving."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recengine.cli import main
from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.models.base import ModelConfig, Recommender, TrainingOptions
from recengine.models.registry import create_model, model_class
from recengine.pipeline.isolated import retrain_in_child
from recengine.pipeline.tune import tune
from recengine.progress import ProgressCallback
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

PATH = "tests.pipeline.test_open_registry:LeastPopular"


class LeastPopular(Recommender):
    """The items fewest users chose first (a deliberately odd model: nothing built in does it)."""

    name = "least-popular"

    class Config(ModelConfig):
        offset: float = 1.0

    config: Config
    state = ("inverse_",)
    inverse_: np.ndarray

    @classmethod
    def search_space(cls, fixed: Any) -> dict[str, tuple[str, float, float, bool]]:
        return {"offset": ("float", 0.5, 2.0, False)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        counts = data.item_counts().astype(np.float32)
        return {"inverse_": 1.0 / (counts + self.config.offset)}

    def _score(self, queries: Queries) -> np.ndarray:
        return np.broadcast_to(self.inverse_, (len(queries), len(self.inverse_)))


def test_an_import_path_names_the_class_and_its_saved_models(tmp_path: Path) -> None:
    assert model_class(PATH) is LeastPopular and LeastPopular.key() == PATH
    from tests.models.conformance import small_data

    data = small_data()
    model = create_model(PATH).fit(data)
    saved = json.loads((model.save(tmp_path / "m") / "model.json").read_text())
    assert saved["model"] == PATH
    loaded = Recommender.load(tmp_path / "m", histories=data)
    assert type(loaded) is LeastPopular
    assert model.recommend("u1", 5)[0].tolist() == loaded.recommend("u1", 5)[0].tolist()


def test_unknown_paths_are_clear_errors() -> None:
    from recengine.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="cannot import"):
        model_class("tests.nowhere:Model")
    with pytest.raises(ModelNotFoundError, match="not a Recommender"):
        model_class("json:dumps")


def test_the_tuner_reads_the_search_space_from_the_class() -> None:
    from recengine.data.splits import stratified
    from recengine.data.synthetic import generate
    from recengine.data.weighting import aggregate
    from recengine.pipeline.prepare import training_data

    dataset = generate(n_users=60, n_items=30, seed=1)
    split = stratified(aggregate(dataset.events), 0.25, seed=0)
    data = training_data(dataset, split.train, extra_items=split.test["item_id"].unique())
    result = tune(PATH, data, split, trials=2)
    assert set(result.best_params) == {"offset"} and len(result.trials) == 2


def test_evaluate_prints_it_under_its_path(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code = main(["evaluate", "--dataset", "synthetic",
                 "--models", f"popularity,{PATH}", "--json", "--output", str(tmp_path)])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"popularity", PATH}
    assert metrics[PATH]["ndcg@10"] != metrics["popularity"]["ndcg@10"]


def test_it_retrains_in_the_child_and_serves(store: EventStore,
                                            registry: ModelRegistry) -> None:
    outcome = retrain_in_child(store.url, registry.root, {"odd": {"model": PATH}},
                               store.last_id(), {}, threading.Event())
    assert outcome.activated
    assert registry.show(outcome.version)["models"]["odd"]["model"] == PATH
    state = ServingState(registry, store)
    state.load_current()
    model = state.active.model
    user = str(model.users_.ids[0])
    _, answer = state.recommend(user, 5)
    assert [r.source for r in answer] == ["least-popular"] * 5
    expected = model.recommend(user, 5)[0].tolist()
    assert [r.item for r in answer] == expected

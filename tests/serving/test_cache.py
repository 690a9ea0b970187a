"""Kept answers: reused, bounded, dropped when a history or the model changes, never stale."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.models.base import Recommender
from recengine.serving.bell import Ring
from recengine.serving.cache import AnswerCache
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import World


def test_least_recent_user_leaves_first() -> None:
    cache = AnswerCache[str](max_users=2)
    for user in ("a", "b"):
        cache.put(user, 10, user.upper(), cache.ticket())
    assert cache.get("a", 10) == "A"  # a is now the most recent
    cache.put("c", 10, "C", cache.ticket())
    assert cache.get("b", 10) is None
    assert (cache.get("a", 10), cache.get("c", 10), len(cache)) == ("A", "C", 2)
    assert cache.get("a", 5) is None  # another request key


def test_forget_clear_and_stale_tickets() -> None:
    cache = AnswerCache[str](max_users=10)
    ticket = cache.ticket()
    cache.put("a", 10, "A", ticket)
    cache.forget("a")
    assert cache.get("a", 10) is None
    cache.put("a", 10, "computed before the change", ticket)
    assert cache.get("a", 10) is None
    cache.put("a", 10, "A", cache.ticket())
    cache.clear()
    assert len(cache) == 0


def test_zero_keeps_nothing() -> None:
    cache = AnswerCache[str](max_users=0)
    cache.put("a", 10, "A", cache.ticket())
    assert cache.get("a", 10) is None


def test_state_reuses_answers_until_the_user_or_the_model_changes(state: ServingState,
                                                                   world: World) -> None:
    user = world.users[0]
    _, first = state.recommend(user, 5)
    assert len(state.answers) == 1
    _, again = state.recommend(user, 5)
    assert again == first
    _, page = state.recommend(user, 2, offset=3)  # another depth: computed, then kept too
    assert page == first[3:5]
    state.recommend(user, 5, explain=True)  # reasons are never kept
    state.store.ingest([{"user_id": user, "item_id": first[0].item, "event_type": "view"}])
    state.changed(Ring.EVENTS)  # the next answer reads it from the store
    _, after = state.recommend(user, 5)
    assert first[0].item not in [r.item for r in after]
    state.swap(world.versions[1])
    assert len(state.answers) == 0


def test_large_catalogues_are_answered_from_the_graph(world: World, tmp_path) -> None:
    exact = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url))
    graph = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url),
                         approximate_min_items=len(world.items))
    exact.load_current()
    graph.load_current()
    assert exact.active.model.retrieval_ is None
    assert graph.active.model.retrieval_ is not None
    overlap = []
    for user in world.users[:50]:
        want = {r.item for r in exact.recommend(user, 10)[1]}
        got = [r.item for r in graph.recommend(user, 10)[1]]
        assert len(got) == len(set(got)) == 10
        overlap.append(len(want & set(got)) / 10)
    assert np.mean(overlap) >= 0.95


def test_the_graph_saved_with_a_model_is_used_not_rebuilt(world: World, tmp_path,
                                                           monkeypatch) -> None:
    source = ModelRegistry(world.registry_root)
    manifest = source.show(world.versions[0])
    models = {name: source.load(world.versions[0], name) for name in manifest["models"]}
    models["wals"].build_index()
    registry = ModelRegistry(tmp_path / "registry")
    registry.activate(registry.publish(models, data=manifest["data"], metrics={}))

    def rebuilt(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the saved graph was built again")

    monkeypatch.setattr(Recommender, "build_index", rebuilt)
    for limit, indexed in [(len(world.items), True), (len(world.items) + 1, False),
                           (None, False)]:
        state = ServingState(registry, EventStore(world.database_url),
                             approximate_min_items=limit, ef_search=7)
        state.load_current()
        indexes = state.active.model.indexes
        assert len(indexes) == (2 if indexed else 0)
        assert all(index.ef_search == 7 for index in indexes)
        assert len(state.recommend(world.users[0], 10)[1]) == 10
        assert len(state.similar(world.items[0], 10)[1]) == 10


def test_a_hybrid_answers_from_its_sources_saved_graphs(world: World, world_data,
                                                        tmp_path, monkeypatch) -> None:
    """The hybrid's version carries its sources' graphs; a server whose catalogue is large
    enough answers from them without building them, one below the limit answers exactly, and
    both give ten unseen items."""
    pytest.importorskip("torch")
    from recengine.models.hybrid import Hybrid

    hybrid = Hybrid(candidates=30, ranker={"hidden": (8,), "epochs": 1, "patience": 1})
    hybrid.fit(world_data).build_index()
    assert hybrid.indexes  # wals, content, wals-features
    registry = ModelRegistry(tmp_path / "registry")
    registry.activate(registry.publish({"hybrid": hybrid}, data={}, metrics={}))
    monkeypatch.setattr(Recommender, "build_index", _never_rebuilt)
    answers = []
    for limit, indexed in [(len(world_data.items), True), (len(world_data.items) + 1, False)]:
        state = ServingState(registry, EventStore(world.database_url),
                             approximate_min_items=limit, ef_search=9)
        state.load_current()
        indexes = state.active.model.indexes
        assert len(indexes) == (len(hybrid.indexes) if indexed else 0)
        assert all(index.ef_search == 9 for index in indexes)
        answers.append([r.item for r in state.recommend(world.users[0], 10)[1]])
    assert all(len(a) == 10 for a in answers)
    assert len(set(answers[0]) & set(answers[1])) >= 8  # graph proposals are approximate


def _never_rebuilt(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the saved graphs were built again")

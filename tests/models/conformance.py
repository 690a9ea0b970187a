"""The checks every recommender must pass; each model's test class inherits them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import (
    DataError,
    ModelLoadError,
    NotFittedError,
    NotSupportedError,
    UnknownIdError,
)
from recengine.models.base import Capability, Recommender


def small_data(seed: int = 0, n_users: int = 40, n_items: int = 30) -> TrainingData:
    """Users who each like one of three genres, with ratings; a few catalogue-only items."""
    rng = np.random.default_rng(seed)
    genres = np.array(["drama", "comedy", "horror"])
    item_genre = rng.integers(0, 3, size=n_items)
    rows = []
    for u in range(n_users):
        liked = u % 3
        pool = np.flatnonzero(item_genre == liked)
        picks = rng.choice(pool, size=min(len(pool), int(rng.integers(3, 8))), replace=False)
        extra = rng.choice(n_items - 3, size=2, replace=False)
        for i in set(picks.tolist()) | set(extra.tolist()):
            if i >= n_items - 3:
                continue  # the last three items stay without events
            rows.append((f"u{u}", f"i{i}", float(4 + (item_genre[i] == liked)), 1.0 + rng.random()))
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "feedback"])
    items = pd.DataFrame({"genres": [[g] for g in genres[item_genre]]},
                         index=pd.Index([f"i{i}" for i in range(n_items)], name="id"))
    return TrainingData.from_interactions(pairs, items=items,
                                          item_feature_kinds={"genres": FeatureKind.MULTI})


def _copy_model(folder: Path, to: Path) -> Path:
    """A copy of a saved model's folder, to damage."""
    import shutil

    return Path(shutil.copytree(folder, to))


class RecommenderConformance:
    """Inherit and set ``model_class`` (and ``params``) to check a model against the interface."""

    model_class: ClassVar[type[Recommender]]
    params: ClassVar[dict[str, object]] = {}

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> TrainingData:
        return small_data()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, data) -> Recommender:
        return cls.model_class(**cls.params).fit(data)

    def test_unfitted_model_says_so(self):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            self.model_class(**self.params).recommend(["u1"])

    def test_config_round_trips_through_json(self):
        model = self.model_class(**self.params)
        again = type(model.config).model_validate_json(model.config.model_dump_json())
        assert again == model.config

    def test_recommend_excludes_seen_items_and_is_sorted(self, model, data):
        idx, scores = model.recommend_indices(np.arange(data.n_users), 10)
        assert idx.shape == scores.shape == (data.n_users, 10)
        for u in range(data.n_users):
            seen = set(data.feedback[[u]].indices.tolist())
            row = idx[u][idx[u] >= 0]
            assert seen.isdisjoint(row.tolist())
            assert len(set(row.tolist())) == len(row)
            valid = scores[u][idx[u] >= 0]
            assert np.all(np.diff(valid) <= 1e-6)

    def test_exclude_seen_false_can_return_seen_items(self, model, data):
        idx, _ = model.recommend_indices(np.arange(data.n_users), data.n_items, exclude_seen=False)
        assert (idx >= 0).all()  # every item, seen or not, is ranked

    def test_candidate_filter_restricts_the_answer(self, model, data):
        allowed = np.array([0, 5, 7, 11])
        idx, _ = model.recommend_indices(np.arange(data.n_users), 10, candidates=allowed,
                                         exclude_seen=False)
        assert set(idx[idx >= 0].tolist()) <= set(allowed.tolist())
        assert (idx[:, 4:] == -1).all()  # only four candidates exist: the rest is padding

    def test_id_level_recommend_matches_index_level(self, model, data):
        users = ["u3", "u7"]
        ids, scores = model.recommend(users, 5)
        idx, sc = model.recommend_indices(data.users.index(users), 5)
        assert ids.tolist() == data.items.id_of(idx).tolist()
        np.testing.assert_allclose(scores, sc)
        one, _ = model.recommend("u3", 5)
        assert one.tolist() == ids[0].tolist()

    def test_unknown_users_raise_or_get_an_empty_row(self, model):
        with pytest.raises(UnknownIdError, match="nobody"):
            model.recommend(["nobody"])
        ids, _ = model.recommend(["u1", "nobody"], 3, missing="negative")
        assert ids[1].tolist() == [None, None, None] and None not in ids[0].tolist()

    def test_history_fold_in_excludes_the_history(self, model):
        ids, scores = model.recommend_history(["i0", "i1", "not-an-item"], 5)
        assert len(ids) == 5 and not {"i0", "i1"} & set(ids.tolist())
        assert np.isfinite(scores).all()

    def test_score_pairs_unknown_is_nan(self, model):
        scores = model.score(["u1", "u1", "ghost"], ["i2", "ghost", "i2"])
        assert np.isfinite(scores[0]) and np.isnan(scores[1:]).all()

    def test_pair_scores_agree_with_recommend(self, model):
        ids, scores = model.recommend("u2", 3)
        np.testing.assert_allclose(model.score(["u2"] * 3, ids.tolist()), scores, rtol=1e-5)

    def test_explanations_one_per_item(self, model):
        ids, _ = model.recommend("u4", 4)
        reasons = model.explain("u4", ids.tolist())
        assert len(reasons) == 4 and all(isinstance(r, str) and r for r in reasons)

    def test_save_load_gives_the_same_answers(self, model, data, tmp_path):
        """Every kind of answer, before saving and after loading (histories given back)."""
        loaded = Recommender.load(model.save(tmp_path / "m"), histories=data)
        assert type(loaded) is type(model) and loaded.config == model.config
        users = np.arange(data.n_users)
        a, sa = model.recommend_indices(users, 10)
        b, sb = loaded.recommend_indices(users, 10)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb)
        for name in ("recommend_history", "explain_history"):
            args = (["i0", "i4"], 5) if name == "recommend_history" else (["i0"], ["i2", "i5"])
            first, again = getattr(model, name)(*args), getattr(loaded, name)(*args)
            assert str(first) == str(again)
        assert model.explain("u3", ["i1", "i2"]) == loaded.explain("u3", ["i1", "i2"])
        np.testing.assert_allclose(model.score(["u1", "u2"], ["i2", "i3"]),
                                   loaded.score(["u1", "u2"], ["i2", "i3"]))
        for who in (model, loaded):
            assert who.supports(Capability.SIMILAR_ITEMS) == model.supports(
                Capability.SIMILAR_ITEMS)
        if model.supports(Capability.SIMILAR_ITEMS):
            for x, y in zip(model.similar_items(["i1", "i7"], 5),
                            loaded.similar_items(["i1", "i7"], 5), strict=True):
                np.testing.assert_array_equal(x, y)
        for x, y in zip(model.audience(["i2", "i5"], 7), loaded.audience(["i2", "i5"], 7),
                        strict=True):
            np.testing.assert_array_equal(x, y)

    def test_a_saved_array_cut_short_is_refused_at_load(self, model, tmp_path):
        """Each learned array cut by one row, and each vocabulary an array is sized by: the
        load fails naming the folder, instead of serving answers from arrays that disagree."""
        folder = model.save(tmp_path / "m")
        with np.load(folder / "state.npz", allow_pickle=False) as z:
            arrays = dict(z)
        sized_by = {dim for shape in model.state_shapes().values() for dim in shape}
        cuttable = [name for name, array in arrays.items() if array.ndim and len(array) and (
            name not in ("users_", "items_") or name.removesuffix("_") in sized_by)]
        assert {n for n in model.state if arrays[n].ndim and arrays[n].size} <= set(cuttable)
        for name in cuttable:
            cut = _copy_model(folder, tmp_path / f"cut-{name}")
            np.savez(cut / "state.npz", allow_pickle=False,
                     **arrays | {name: arrays[name][:-1]})
            with pytest.raises(ModelLoadError, match=re.escape(str(cut))):
                Recommender.load(cut)

    def test_a_state_that_disagrees_is_refused_and_nothing_is_installed(self, model, data):
        fitted = type(model)(model.config).fit(data)
        arrays, meta = fitted.get_state()
        cuttable = [name for name, array in arrays.items() if array.ndim and len(array)]
        if not cuttable:
            return  # nothing learned, nothing to disagree
        before = fitted.recommend_indices(np.arange(data.n_users), 10)
        name = cuttable[0]
        with pytest.raises(DataError):
            fitted.set_state(data.users, data.items, arrays | {name: arrays[name][:-1]}, meta)
        after = fitted.recommend_indices(np.arange(data.n_users), 10)
        np.testing.assert_array_equal(before[0], after[0])

    def test_saved_model_holds_no_training_matrix(self, model, data, tmp_path):
        """Histories are the caller's: a model folder is learned state only."""
        folder = model.save(tmp_path / "m")
        with np.load(folder / "state.npz", allow_pickle=False) as z:
            assert not any(name.startswith("user_items") for name in z.files)
        bare = Recommender.load(folder)
        with pytest.raises(NotSupportedError, match="without histories"):
            bare.recommend("u1")
        ids, _ = bare.recommend_history(["i0", "i4"], 5)  # by history: still answers
        assert ids.tolist() == model.recommend_history(["i0", "i4"], 5)[0].tolist()

    def test_a_failed_refit_leaves_the_model_as_it_was(self, model, data, monkeypatch):
        """Training runs to the end on other data, then fails: nothing of it is installed."""
        fitted = type(model)(model.config).fit(data)
        before = fitted.recommend_indices(np.arange(data.n_users), 10)
        train = type(fitted)._train

        def train_then_fail(self, *args, **kwargs):
            train(self, *args, **kwargs)
            raise RuntimeError("crash after training")

        monkeypatch.setattr(type(fitted), "_train", train_then_fail)
        with pytest.raises(RuntimeError, match="crash after training"):
            fitted.fit(self.other_data())
        monkeypatch.undo()
        assert fitted.users_ == data.users and fitted.items_ == data.items
        after = fitted.recommend_indices(np.arange(data.n_users), 10)
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_array_equal(before[1], after[1])

    def test_capabilities_are_declared(self, model):
        """A capability the class does not declare is refused up front, with its name."""
        for capability, call in ((Capability.SIMILAR_ITEMS, lambda: model.similar_items("i1")),
                                 (Capability.SIMILAR_USERS, lambda: model.similar_users("u1")),
                                 (Capability.USER_VECTORS, lambda: model.fold_in(["i1"]))):
            if not model.supports(capability):
                with pytest.raises(NotSupportedError, match=capability.value):
                    call()
            else:
                call()

    def other_data(self) -> TrainingData:
        """A second, different dataset for the refit check (override to add features)."""
        return small_data(seed=1, n_users=10)

    def test_refit_replaces_the_first_fit(self, data):
        other = self.other_data()
        model = self.model_class(**self.params).fit(other).fit(data)
        assert len(model.users_) == data.n_users
        fresh = self.model_class(**self.params).fit(data)
        np.testing.assert_array_equal(model.recommend_indices(np.arange(5), 5)[0],
                                      fresh.recommend_indices(np.arange(5), 5)[0])


def device_data(n_users: int = 120, n_items: int = 40, seed: int = 0) -> TrainingData:
    """Even items are short, odd long (an item field says which); every user picks 6 short
    items on a phone and 6 long ones on a tv. Only the device tells which a request wants."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for device, kind in (("mobile", 0), ("tv", 1)):
            for i in rng.choice(np.arange(kind, n_items, 2), size=6, replace=False):
                rows.append((f"u{u}", f"i{i}", device, int(rng.integers(1_000_000))))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "device", "timestamp"])
    events["timestamp"] = pd.to_datetime(events["timestamp"], unit="s")
    pairs = events[["user_id", "item_id"]].assign(rating=np.nan, feedback=1.0)
    items = pd.DataFrame({"format": ["short", "long"] * (n_items // 2)},
                         index=pd.Index([f"i{i}" for i in range(n_items)], name="id"))
    return TrainingData.from_interactions(pairs, items=items, events=events,
                                          item_feature_kinds={"format": FeatureKind.CATEGORICAL})

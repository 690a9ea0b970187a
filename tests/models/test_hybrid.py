"""The hybrid: the interface, candidate generation, the carve, and a ranker that must learn
what its sources miss."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.query import Queries
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError, NotSupportedError
from recengine.models.base import Capability, Recommender
from recengine.models.ease import EASE
from recengine.models.hybrid import Hybrid
from recengine.models.hybrid.candidates import Source, propose, union_recall
from recengine.models.hybrid.model import carve, new_item_pairs
from recengine.models.popularity import Popularity
from recengine.models.rules import Exclude, RuleEngine
from tests.models.conformance import RecommenderConformance, device_data, small_data
from tests.models.test_two_tower import GENRES, genre_data

pytest.importorskip("torch")

#: Every default source, a ranker small enough for a fit in a second or two.
QUICK: dict[str, object] = {"ranker": {"hidden": (16,), "epochs": 3, "patience": 2}}


class TestHybrid(RecommenderConformance):
    model_class = Hybrid
    params: ClassVar[dict[str, object]] = QUICK


def test_the_union_is_bounded_unseen_and_tagged():
    data = small_data()
    sources = [Source("ease", EASE().fit(data), 5), Source("popularity", Popularity().fit(data), 3)]
    queries = data.queries(np.arange(data.n_users))
    union = propose(sources, queries, limit=6)
    assert (np.diff(union.indptr) <= 6).all()
    for row in range(len(union)):
        span = slice(union.indptr[row], union.indptr[row + 1])
        items = union.items[span]
        assert len(set(items.tolist())) == len(items)
        assert not set(items.tolist()) & set(data.feedback[[row]].indices.tolist())
        # every candidate was proposed by someone, and the best ranks come first
        assert union.proposed[span].any(axis=1).all()
        best = np.where(union.proposed[span], union.ranks[span], 99).min(axis=1)
        assert (np.diff(best) >= 0).all()
    popular = sources[1].model.recommend_indices(np.arange(data.n_users), 3)[0]
    rows = np.flatnonzero(union.proposed[:, 1] & (union.ranks[:, 1] == 0))
    assert (union.items[rows] == popular[union.rows[rows], 0]).all()


def test_union_recall_counts_each_source_and_the_union():
    data = small_data()
    sources = [Source("ease", EASE().fit(data), 2), Source("popularity", Popularity().fit(data), 2)]
    union = propose(sources, data.queries(np.array([0, 1])), limit=10)
    first = union.items[union.indptr[0]:union.indptr[1]]
    ease_first = first[union.proposed[union.indptr[0]:union.indptr[1], 0]][:1]
    relevant = [np.array([ease_first[0], 10_000]), np.array([10_001])]
    recall = union_recall(union, relevant, ["ease", "popularity"])
    assert recall["union"] == pytest.approx(1 / 3)
    assert recall["ease"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("how", ["random", "time"])
def test_the_carve_holds_out_a_share_of_each_user_with_enough_items(how):
    data = small_data()
    drop = carve(data, 0.25, how, seed=0)
    counts = np.diff(data.feedback.indptr)
    dropped = np.add.reduceat(drop, data.feedback.indptr[:-1])
    assert (dropped[counts >= 3] == np.maximum(1, np.round(0.25 * counts[counts >= 3]))).all()
    assert (dropped[counts < 3] == 0).all()
    if how == "time":  # the held-out pairs are each user's latest
        for user in np.flatnonzero(dropped):
            events = data.log.row_items(user)
            held = set(data.feedback[[user]].indices[drop[data.feedback.indptr[user]:
                                                          data.feedback.indptr[user + 1]]])
            last_seen = {item: pos for pos, item in enumerate(events.tolist())}
            kept = set(last_seen) - held
            assert min(last_seen[i] for i in held) > max(last_seen[i] for i in kept)


def test_the_ranker_learns_a_cross_its_sources_miss():
    """Users like the genre their ``taste`` feature names; the only source is popularity,
    which knows neither. The ranker reads both features and must learn their product."""
    data = genre_data(user_features=True, n_users=120, n_items=45, cold=0)
    model = Hybrid(sources=[{"model": "popularity", "depth": 45}], similarity_source=None,
                   carves=2, ranker={"epochs": 40, "patience": 8, "learning_rate": 5e-3}
                   ).fit(data)
    top, _ = model.recommend_indices(np.arange(data.n_users), 5)
    liked = np.array([int(str(u)[1:]) % 3 for u in data.users.ids])
    genre = np.array([int(str(i)[1:]) % 3 for i in data.items.ids])
    assert (genre[top] == liked[:, None]).mean() > 0.8  # popularity alone: about a third
    training = model.training_
    assert training["validation_ndcg@10"] > training["sources_validation_ndcg@10"][
        "popularity"] + 0.1
    assert {f"taste={g}" for g in GENRES} <= set(model.profile_.user_names)
    assert {f"genres={g}" for g in GENRES} <= set(model.profile_.item_names)
    assert not model.supports(Capability.CONTEXT)  # no event named a device


def test_the_ranker_learns_what_people_choose_on_each_device(tmp_path):
    """Popularity, the only source, knows no device; the carve holds out pairs with the device
    they were chosen on, and the ranker must learn that a phone asks for short items."""
    data = device_data(n_users=240)
    model = Hybrid(sources=[{"model": "popularity", "depth": 40}], similarity_source=None,
                   carves=2, ranker={"epochs": 40, "patience": 8, "learning_rate": 5e-3}
                   ).fit(data)
    assert model.profile_.devices == ("mobile", "tv")
    assert model.supports(Capability.CONTEXT)
    assert {"device:mobile", "device:tv", "device:affinity"} <= set(model.feature_names)
    short = np.array([int(str(i)[1:]) % 2 == 0 for i in data.items.ids])
    affinity = model.profile_.affinity  # short items are only ever chosen on phones
    assert (affinity[short, 0] > 0).all() and (affinity[short, 1] < 0).all()
    assert (affinity[~short, 0] < 0).all() and (affinity[~short, 1] > 0).all()
    users = np.arange(data.n_users)

    def short_share(device: str | None, fitted: Hybrid = model) -> float:
        context = tuple({} if device is None else {"device": device} for _ in users)
        queries = data.queries(users)
        queries.context = context
        top, _ = fitted.recommend_queries(queries, 3)
        return float(np.mean([int(str(i)[1:]) % 2 == 0 for i in data.items.ids[top.ravel()]]))

    assert short_share("mobile") > 0.8 and short_share("tv") < 0.2
    assert 0.2 < short_share(None) < 0.8 and 0.2 < short_share("watch") < 0.8  # unknown
    path = model.save(tmp_path / "hybrid")
    loaded = Hybrid.load(path)
    assert loaded.profile_.devices == ("mobile", "tv")
    assert short_share("mobile", loaded) == short_share("mobile")
    queries = data.queries(users[:1])
    queries.context = ({"device": "mobile"},)
    (reason,) = model.explain_indices(queries, model.recommend_queries(queries, 1)[0][0])
    assert "your device" in reason


def test_a_constraint_narrows_what_the_sources_propose():
    """A request that rules out the 30 most popular of 60 items (a constraint, a rule's
    exclusions): popularity, the only source, proposes its 20 best of the other 30, and the
    ranker orders them by taste. Were the union drawn first and narrowed after, it would hold
    next to nothing allowed and the answer would follow popularity: a third in genre."""
    data = genre_data(user_features=True, n_users=120, n_items=60, cold=0)
    model = Hybrid(sources=[{"model": "popularity", "depth": 20}], similarity_source=None,
                   carves=2, ranker={"epochs": 40, "patience": 8, "learning_rate": 5e-3}
                   ).fit(data)
    allowed = np.argsort(-data.item_counts(), kind="stable")[30:]
    top, _ = model.recommend_indices(np.arange(data.n_users), 3, candidates=allowed)
    assert np.isin(top, allowed).all()
    liked = np.array([int(str(u)[1:]) % 3 for u in data.users.ids])
    genre = np.array([int(str(i)[1:]) % 3 for i in data.items.ids])
    assert (genre[top] == liked[:, None]).mean() > 0.8
    # The same through business rules, as the server applies a request's constraint.
    rule = Exclude(items=data.items.ids[np.setdiff1d(np.arange(60), allowed)].tolist())
    ruled, _ = RuleEngine([rule], data.items, data.item_features).recommend(
        model, np.arange(data.n_users), 3)
    np.testing.assert_array_equal(ruled, top)
    # Explained as answered: proposed among the allowed items (not "after the candidates").
    ruled_out = np.setdiff1d(np.arange(60), allowed)
    reasons = model.explain_indices(model.training_queries(np.array([0])), top[0],
                                    exclude=ruled_out)
    assert all(reason.startswith("proposed ") for reason in reasons)
    assert any(reason.startswith("proposed among the items the request allows")
               for reason in reasons)  # below popularity's whole top 20
    assert model.explain_indices(model.training_queries(np.array([0])), top[0])[0].startswith(
        "not proposed")


def test_explanations_name_the_sources_and_what_ranked_the_item_up():
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    ids, _ = model.recommend("u4", 3)
    for reason in model.explain("u4", ids.tolist()):
        assert reason.startswith("proposed by ")
        assert any(tag in reason for tag in ("wals", "ease", "item-knn", "content",
                                             "popularity"))


def test_a_new_user_known_by_history_is_ranked_from_it():
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    ids, scores = model.recommend_history(["i0", "i3"], 5)
    assert len(ids) == 5 and np.isfinite(scores).all() and not {"i0", "i3"} & set(ids)
    assert isinstance(model.training_queries(np.array([0])), Queries)


def test_a_content_source_is_skipped_without_item_features():
    data = small_data()
    bare = type(data)(data.users, data.items, data.feedback, data.ratings, log=data.log)
    model = Hybrid(**QUICK).fit(bare)
    assert "content" not in [s.tag for s in model.sources_]


def test_sources_must_be_told_apart():
    with pytest.raises(DataError, match="two sources are tagged 'ease'"):
        Hybrid(sources=[{"model": "ease"}, {"model": "ease"}], similarity_source=None)
    with pytest.raises(DataError, match="similarity_source"):
        Hybrid(sources=[{"model": "ease"}])


def test_it_is_registered_and_saved_whole(tmp_path):
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "h"), histories=data)
    assert [s.tag for s in loaded.sources_] == [s.tag for s in model.sources_]
    assert loaded.training_ == model.training_


def test_the_start_is_the_blend_of_sources_that_ranked_the_training_lists_best():
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    per_blend = model.training_["training_ndcg@10_per_blend"]
    assert model.blend_ == int(max(per_blend, key=lambda b: (per_blend[b], -int(b))))
    queries = data.queries(np.arange(5))
    candidates = propose(model.sources_, queries, model.config.candidates)
    served = model._signals(candidates, queries, model.sources_, model.profile_, model.order_,
                            model.blend_, model.echoes_)[:, -1]
    known = model.profile_.items[candidates.items, 3] == 0  # items without events: apart
    for row in range(len(candidates)):  # the mean of the first blend_ sources that answer
        span = np.arange(candidates.indptr[row], candidates.indptr[row + 1])
        span = span[known[span]]
        scores = candidates.scores[span]
        answering = [j for j in model.order_ if np.ptp(scores[:, j]) > 0][:model.blend_]
        voices: dict[int, list[int]] = {}  # an echo and its source: one voice, one term
        for j in answering:
            voices.setdefault(model.echoes_.get(j, j), []).append(j)
        expected = np.mean([scores[:, v].mean(axis=1) for v in voices.values()], axis=0)
        np.testing.assert_allclose(served[span], expected, rtol=1e-5)


def test_correlated_sources_are_echoes_of_the_first_of_them():
    from recengine.models.hybrid.signals import correlations, echoes

    rng = np.random.default_rng(0)
    indptr = np.array([0, 40, 100])
    base, other = rng.normal(size=100), rng.normal(size=100)
    shift = np.where(np.arange(100) < 40, 5.0, -3.0)  # each list's own level: taken out
    scores = np.stack([base, other, 2 * base + shift + 0.5 * rng.normal(size=100)], axis=1)
    alike = correlations(scores, indptr)
    assert 0.95 < alike[0, 2] < 0.99 and abs(alike[0, 1]) < 0.3
    np.testing.assert_allclose(np.diag(alike), 1.0)
    assert echoes(alike, order=[0, 1, 2]) == {2: 0}
    assert echoes(alike, order=[2, 1, 0]) == {0: 2}  # the earlier one is the voice
    assert echoes(alike, order=[0, 1, 2], threshold=0.999) == {}
    chain = np.stack([base, base + 0.3 * other, base + 0.6 * other], axis=1)
    assert echoes(correlations(chain, indptr), order=[0, 1, 2], threshold=0.9) == {1: 0, 2: 0}


def test_a_source_twice_is_one_voice_in_the_blend_and_the_echoes_are_saved(tmp_path):
    """The same model under a second tag scores every candidate alike: an echo. The two are
    one term of a blend, so a source present twice weighs as much as any other."""
    from recengine.models.hybrid.signals import first_answer

    data = small_data()
    sources = [{"model": "ease"}, {"model": "ease", "name": "ease-again"},
               {"model": "popularity"}]
    model = Hybrid(sources=sources, similarity_source=None, **QUICK).fit(data)
    tags = [s.tag for s in model.sources_]
    ease, copy, popularity = (tags.index(t) for t in ("ease", "ease-again", "popularity"))
    assert model.training_["echoes"] == {"ease-again": "ease"}
    assert model.training_["likeness_to_an_earlier_source"]["ease-again"] == pytest.approx(1.0)
    assert model.echoes_ == {copy: ease}
    queries = data.queries(np.arange(data.n_users))
    candidates = propose(model.sources_, queries, model.config.candidates)
    scores, indptr = candidates.scores, candidates.indptr
    voiced = first_answer(scores, indptr, [ease, copy, popularity], blend=3,
                          echoes=model.echoes_)
    lists = np.flatnonzero([np.ptp(scores[indptr[r]:indptr[r + 1], ease]) > 0
                            and np.ptp(scores[indptr[r]:indptr[r + 1], popularity]) > 0
                            for r in range(len(candidates))])
    assert len(lists)
    counted = first_answer(scores, indptr, [ease, copy, popularity], blend=3)
    for r in lists:  # ease and popularity, half each: the copy adds no weight
        span = slice(indptr[r], indptr[r + 1])
        np.testing.assert_allclose(voiced[span], (scores[span, ease]
                                                  + scores[span, popularity]) / 2, rtol=1e-5)
        np.testing.assert_allclose(counted[span], (2 * scores[span, ease]  # without: twice
                                                   + scores[span, popularity]) / 3, rtol=1e-5)
    loaded = Recommender.load(model.save(tmp_path / "h"), histories=data)
    assert loaded.echoes_ == model.echoes_
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.recommend_indices(users, 5)[0],
                                  model.recommend_indices(users, 5)[0])
    arrays, meta = model.get_state()  # saved before echoes were: none
    older = {key: value for key, value in meta.items() if key != "echoes"}
    assert Hybrid(model.config).set_state(data.users, data.items, arrays, older,
                                          data).echoes_ == {}
    with pytest.raises(DataError, match="echoes"):
        Hybrid(model.config).set_state(data.users, data.items, arrays,
                                       meta | {"echoes": [[len(tags), ease]]}, data)


def test_similar_items_and_diversity_come_from_the_similarity_source():
    from recengine.models.base import Capability
    from recengine.models.rules import RuleEngine, parse_rules

    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    knn = next(s.model for s in model.sources_ if s.tag == "item-knn")
    for mine, theirs in zip(model.similar_items("i1", 4), knn.similar_items("i1", 4),
                            strict=True):
        np.testing.assert_array_equal(mine, theirs)
    plain = Hybrid(**QUICK, similarity_source=None)
    assert not plain.supports(Capability.SIMILAR_ITEMS)
    engine = RuleEngine(parse_rules([{"kind": "mmr", "relevance_weight": 0.3}]), data.items,
                        data.item_features)
    queries = model.training_queries(np.array([0]))
    diverse, _ = engine.recommend(model, queries, 5)
    ranked, _ = model.recommend_queries(queries, 5)
    assert set(diverse[0].tolist()) <= set(model.recommend_queries(queries, 50)[0][0].tolist())
    assert len(set(diverse[0].tolist())) == 5 and ranked[0, 0] == diverse[0, 0]


def test_the_documented_config_file_is_the_defaults(tmp_path):
    """docs/hybrid.toml spells out every default; a file with a wrong key is refused."""
    from pathlib import Path

    from recengine.pipeline.tune import read_config_file

    name, config = read_config_file(Path(__file__).parents[2] / "docs" / "hybrid.toml")
    assert name == "hybrid" and Hybrid(**config).config == Hybrid().config
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "hybrid"\n[config]\ncandidate = 3\n')
    with pytest.raises(DataError, match="candidate"):
        Hybrid(**read_config_file(bad)[1])
    broken = tmp_path / "broken.toml"
    broken.write_text("model = \n")
    with pytest.raises(DataError, match=r"broken\.toml"):
        read_config_file(broken)
    assert Hybrid(**config | {"similarity_source": ""}).config.similarity_source is None
    # the rating head's section, commented out there (it is off by default), is its defaults
    text = (Path(__file__).parents[2] / "docs" / "hybrid.toml").read_text()
    head = text[text.index("# [config.ratings]"):]
    (tmp_path / "ratings.toml").write_text(
        text[:text.index("# [config.ratings]")]
        + "\n".join(line.removeprefix("#").removeprefix(" ") for line in head.splitlines()))
    on = read_config_file(tmp_path / "ratings.toml")[1]
    assert Hybrid(**on).config == Hybrid(ratings={}).config


def test_a_carve_can_make_users_new_and_history_sources_fall_silent_for_them():
    data = small_data()
    drop = carve(data, 0.25, "random", seed=0, whole=0.5)
    counts = np.diff(data.feedback.indptr)
    dropped = np.add.reduceat(drop, data.feedback.indptr[:-1])
    whole = np.flatnonzero((dropped == counts) & (counts >= 3))
    assert len(whole) == round(0.5 * (counts >= 3).sum())
    carved = data.drop_pairs(drop)
    sources = [Source("ease", EASE().fit(carved), 5),
               Source("popularity", Popularity().fit(carved), 3)]
    union = propose(sources, carved.queries(whole), limit=10)
    assert not union.proposed[:, 0].any()  # ease needs a history: it proposes nothing
    assert (np.diff(union.indptr) == 3).all()  # popularity's three, for each new user


def test_new_users_keep_the_first_answer_unless_the_ranker_proves_itself_on_them():
    """Few new users in the validation carve: a new user gets popularity's order (the only
    source with an answer for them). Many, whose taste the ranker reads from their features:
    it is trusted with them."""
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    assert model.training_["ranks_new_users"] is False
    nobody = Queries.from_bag(np.array([-1]), sp.csr_array((1, data.n_items)))
    ranked, _ = model.recommend_queries(nobody, 3)
    popular = next(s.model for s in model.sources_ if s.tag == "popularity")
    np.testing.assert_array_equal(ranked, popular.recommend_queries(nobody, 3)[0])
    assert all(reason.endswith("; ranked by its sources' scores")
               for reason in model.explain_indices(nobody, ranked[0]))
    planted = genre_data(user_features=True, n_users=150, n_items=45, cold=0)
    taught = Hybrid(sources=[{"model": "popularity", "depth": 45}], similarity_source=None,
                    carves=2, cold_users=0.5, validation_users=0.4,
                    ranker={"epochs": 30, "patience": 8, "learning_rate": 5e-3}).fit(planted)
    assert taught.training_["ranks_new_users"] is True


def test_a_cutoff_carve_holds_out_everyone_after_one_moment():
    import pandas as pd

    from recengine.data.training_data import TrainingData

    pairs = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "c"],
                          "item_id": ["x", "y", "z", "x", "y", "z"],
                          "timestamp": pd.to_datetime([1, 2, 9, 3, 8, 10], unit="D"),
                          "rating": np.nan, "feedback": 1.0})
    data = TrainingData.from_interactions(pairs)
    drop = carve(data, 0.5, "cutoff", seed=0)
    rows = np.repeat(data.users.ids, np.diff(data.feedback.indptr))
    held = {(str(u), str(data.items.ids[i])) for u, i, d in
            zip(rows, data.feedback.indices, drop, strict=True) if d}
    assert held == {("a", "z"), ("b", "y"), ("c", "z")}  # days 8, 9 and 10 of 1..10
    untimed = small_data()
    with pytest.raises(DataError, match="needs every event's time"):
        carve(untimed, 0.5, "cutoff", seed=0)


def test_the_ranker_takes_over_only_on_a_gain_the_carve_can_tell_from_chance():
    from recengine.models.hybrid.ranker import Lists, clearly_better

    rng = np.random.default_rng(0)
    n_lists, length = 60, 10
    indptr = np.arange(0, n_lists * length + 1, length)
    labels = np.zeros(n_lists * length, np.float32)
    labels[indptr[:-1] + rng.integers(0, length, n_lists)] = 1.0  # one chosen item a list
    lists = Lists(indptr, np.zeros((len(labels), 1), np.float32), labels,
                  np.ones(n_lists, np.int64))
    blind = rng.random(len(labels))
    assert clearly_better(lists, labels + 0.1 * blind, blind)  # finds every chosen item
    assert not clearly_better(lists, blind, blind)  # the same ranking
    # one list in sixty ranked better: a gain, but inside the noise
    lucky = blind.copy()
    lucky[:length] = labels[:length]
    assert not clearly_better(lists, lucky, blind)
    # two users' lists, each copied fifteen times (one per device, say), better ranked among
    # sixty users: thirty lists of eighty-eight gain, but two users of sixty
    which = np.concatenate([np.repeat(np.arange(2), 15), np.arange(2, n_lists)])
    copies = lists.take(which)
    base = rng.random(len(copies.labels))
    gained = np.where(np.repeat(which, length) < 2, copies.labels + 0.1 * base, base)
    assert clearly_better(copies, gained, base)
    owned = Lists(copies.indptr, copies.features, copies.labels, copies.n_relevant, which)
    assert not clearly_better(owned, gained, base)


def test_items_without_events_are_ordered_by_the_first_source_that_knows_them():
    from recengine.models.hybrid.signals import first_answer

    # one query, two warm candidates (source 0 orders them) and two cold ones (source 0 scores
    # them alike, source 1 orders them)
    scores = np.array([[2.0, 0.1], [1.0, 0.2], [-1.0, 0.9], [-1.0, 0.3]], np.float32)
    unknown = np.array([False, False, True, True])
    got = first_answer(scores, np.array([0, 4]), order=[0, 1], unknown=unknown)
    assert got.tolist() == pytest.approx([2.0, 1.0, 0.9, 0.3])
    assert first_answer(scores, np.array([0, 4]), order=[0, 1]).tolist() == pytest.approx(
        [2.0, 1.0, -1.0, -1.0])  # without the flags, the cold two tie


def test_blocks_of_users_give_the_same_model_as_one(monkeypatch):
    """Memory is bounded by scoring users in blocks; the blocks change nothing learned."""
    import recengine.models.hybrid.model as hybrid_model

    data = small_data()
    whole = Hybrid(**QUICK).fit(data)
    monkeypatch.setattr(hybrid_model, "_CELLS", 3 * data.n_items)  # three users a block
    blocked = Hybrid(**QUICK).fit(data)
    assert blocked.training_ == whole.training_
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(blocked.recommend_indices(users, 5)[0],
                                  whole.recommend_indices(users, 5)[0])


#: A rating head small enough for a fit in a second or two.
QUICK_RATINGS: dict[str, object] = {"folds": 3, "hidden": (16,), "epochs": 40, "patience": 5,
                                   "batch_size": 16}


class TestHybridWithRatings(RecommenderConformance):
    model_class = Hybrid
    params: ClassVar[dict[str, object]] = QUICK | {"ratings": QUICK_RATINGS | {"epochs": 2}}


def _taste_ratings(seed: int = 0) -> tuple[TrainingData, pd.DataFrame]:
    """Users of two tastes, items of two genres: 4.5 stars where taste meets genre, 1.5
    where not. Each user rated only three items in training (a fourth in the test part): too
    few for the collaborative sources, while the features tell every rating."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 120, 40
    genre = np.arange(n_items) % 2
    rows, test = [], []
    for u in range(n_users):
        for k, i in enumerate(rng.choice(n_items, size=4, replace=False)):
            (test if k == 3 else rows).append((f"u{u}", f"i{i}",
                                               4.5 if genre[i] == u % 2 else 1.5))
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    items = pd.DataFrame({"genre": [f"g{g}" for g in genre]},
                         index=pd.Index([f"i{i}" for i in range(n_items)], name="id"))
    users = pd.DataFrame({"taste": [f"g{u % 2}" for u in range(n_users)]},
                         index=pd.Index([f"u{u}" for u in range(n_users)], name="id"))
    data = TrainingData.from_interactions(
        pairs.assign(feedback=pairs["rating"]), items=items, users=users,
        item_feature_kinds={"genre": FeatureKind.CATEGORICAL},
        user_feature_kinds={"taste": FeatureKind.CATEGORICAL})
    return data, pd.DataFrame(test, columns=["user_id", "item_id", "rating"])


def test_the_rating_head_learns_from_features_what_its_sources_cannot():
    data, test = _taste_ratings()
    model = Hybrid(**QUICK, ratings=QUICK_RATINGS).fit(data)
    assert model.predicts_ratings and not Hybrid(**QUICK).predicts_ratings
    head = model.predict_ratings(test["user_id"].tolist(), test["item_id"].tolist())
    first = model.ratings_.sources[0].model  # explicit WALS, where the head starts
    alone = first.predict_ratings(test["user_id"].tolist(), test["item_id"].tolist())
    actual = test["rating"].to_numpy()
    rmse_head = float(np.sqrt(np.mean((head - actual) ** 2)))
    rmse_alone = float(np.sqrt(np.mean((alone - actual) ** 2)))
    assert rmse_head < 0.6 * rmse_alone, (rmse_head, rmse_alone)
    assert head.min() >= 1.5 and head.max() <= 4.5  # clipped to the training range
    how = model.training_["rating_head"]
    assert how["validation_rmse"] < how["first_source_validation_rmse"]
    # recommendations stay the ranker's: pair scores agree with them, not with the ratings
    ids, scores = model.recommend("u0", 3)
    np.testing.assert_allclose(model.score(["u0"] * 3, ids.tolist()), scores, rtol=1e-5)


def test_the_rating_head_is_saved_whole_and_must_match_its_configuration(tmp_path):
    data, test = _taste_ratings()
    model = Hybrid(**QUICK, ratings=QUICK_RATINGS | {"epochs": 2}).fit(data)
    folder = model.save(tmp_path / "h")
    loaded = Recommender.load(folder, histories=data)
    pairs = test["user_id"].tolist(), test["item_id"].tolist()
    np.testing.assert_allclose(loaded.predict_ratings(*pairs), model.predict_ratings(*pairs),
                               rtol=1e-6)
    arrays, meta = model.get_state()
    with pytest.raises(DataError, match="rating head"):
        Hybrid(**QUICK).set_state(data.users, data.items, arrays, meta, data)


def test_the_rating_head_refuses_data_without_ratings_before_the_ranker_trains(monkeypatch):
    import recengine.models.hybrid.model as hybrid_model

    data = small_data()
    implicit = TrainingData(data.users, data.items, data.feedback, data.feedback[:, :0])
    monkeypatch.setattr(hybrid_model, "fit_ranker", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(DataError, match="needs explicit ratings") as error:
        Hybrid(**QUICK, ratings=QUICK_RATINGS).fit(implicit)
    assert error.value.column == "ratings"
    monkeypatch.undo()
    with pytest.raises(NotSupportedError, match="ratings"):
        Hybrid(**QUICK).fit(data).predict_ratings(["u1"], ["i1"])



def test_new_items_are_ordered_by_the_ranker_only_where_it_proved_itself_on_them(tmp_path):
    """Popularity, the only source, scores new items alike; the items' genres and the users'
    tastes tell which new items a user will choose. A carve that makes a third of the items new
    lets the ranker show it orders them by taste; one that makes none cannot show it, so new
    items keep the sources' order (ties: the lower item first)."""
    data = genre_data(user_features=True, n_users=150, n_items=60, cold=6)
    new = np.arange(54, 60)  # no events
    users = np.arange(data.n_users)
    liked = np.array([int(str(u)[1:]) % 3 for u in data.users.ids])
    genre = np.array([int(str(i)[1:]) % 3 for i in data.items.ids])
    config = {"sources": [{"model": "popularity", "depth": 60}], "similarity_source": None,
              "carves": 2, "validation_users": 0.4,
              "ranker": {"epochs": 30, "patience": 8, "learning_rate": 5e-3}}
    taught = Hybrid(**config, cold_items=0.3).fit(data)
    assert taught.training_["ranks_new_items"] is True
    top, _ = taught.recommend_indices(users, 2, candidates=new)
    assert (genre[top] == liked[:, None]).mean() > 0.8
    untaught = Hybrid(**config, cold_items=0.0).fit(data)
    assert untaught.training_["ranks_new_items"] is False
    top, _ = untaught.recommend_indices(users, 2, candidates=new)
    assert (top == new[:2]).all()
    # explained as placed: by the sources' order, not by what the network would have weighed
    blocked = np.setdiff1d(np.arange(data.n_items), new)
    reasons = untaught.explain_indices(data.queries(users[:1]), np.r_[0, top[0]],
                                       exclude=blocked)
    assert reasons[0].startswith("not proposed")  # item 0 was ruled out
    assert all("a new item, placed among the new ones by its sources' scores" in reason
               for reason in reasons[1:])
    taught_reasons = taught.explain_indices(data.queries(users[:1]), new[:2], exclude=blocked)
    assert not any("a new item" in reason for reason in taught_reasons)
    # saved and loaded, each keeps its verdict
    assert Hybrid.load(untaught.save(tmp_path / "h")).ranks_new_items_ is False


def test_a_share_of_items_can_be_made_new():
    data = small_data()
    flags = new_item_pairs(data, 0.25, seed=0)
    chosen = np.unique(data.feedback.indices[flags])
    known = np.unique(data.feedback.indices)
    assert len(chosen) == round(0.25 * len(known))
    assert np.array_equal(flags, np.isin(data.feedback.indices, chosen))  # every pair of them
    with pytest.raises(DataError, match="cold_items"):  # a share, below one
        Hybrid(cold_items=1.0)


def test_items_made_new_teach_no_lift_for_having_no_events():
    """Of the items the carve makes new, only the pairs it holds out anyway are found (the
    rest hidden), so a new item is chosen as often as any other in the ranker's lists. Were
    every pair of theirs a choice to find, the ranker would learn that new items are chosen
    five times as often, and lift the catalogue's six items nobody chose into a quarter of
    the answers."""
    data = genre_data(user_features=True, n_users=150, n_items=60, cold=6)
    model = Hybrid(sources=[{"model": "popularity", "depth": 60}], similarity_source=None,
                   carves=2, validation_users=0.4, cold_items=0.3,
                   ranker={"epochs": 30, "patience": 8, "learning_rate": 5e-3}).fit(data)
    assert model.training_["best_epoch"] >= 0  # the network ranks these answers
    top, _ = model.recommend_indices(np.arange(data.n_users), 5)
    assert (top >= 54).mean() < 0.05

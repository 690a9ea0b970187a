"""Two-tower: the interface, the loss by hand, and what the towers must learn and serve."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.query import Event, Query
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Capability, Recommender, TrainingOptions
from recengine.models.two_tower import TwoTower
from tests.models.conformance import RecommenderConformance, small_data

torch = pytest.importorskip("torch")

#: Small enough for a fit in about a second.
TINY: dict[str, object] = {"embedding_dim": 8, "layers": (16,), "epochs": 4, "batch_size": 32,
                           "random_negatives": 8}
#: Enough to learn the planted structures below.
SMALL: dict[str, object] = {"embedding_dim": 16, "layers": (32,), "epochs": 30,
                            "batch_size": 64, "random_negatives": 16, "learning_rate": 1e-2,
                            "patience": 5}
GENRES = np.array(["drama", "comedy", "horror"])


class TestTwoTower(RecommenderConformance):
    model_class = TwoTower
    params: ClassVar[dict[str, object]] = TINY


class TestTwoTowerContentAttention(RecommenderConformance):
    """The learned content model (no item ids), pooling by attention, with user ids."""

    model_class = TwoTower
    params: ClassVar[dict[str, object]] = TINY | {"use_item_ids": False,
                                                  "pooling": "attention",
                                                  "use_user_ids": True}


def genre_data(*, n_users: int = 150, n_items: int = 60, cold: int = 6, seed: int = 0,
               skew: float = 0.0, user_features: bool = False,
               names: bool = False) -> TrainingData:
    """Item ``i`` is of genre ``i % 3``, user ``u`` likes genre ``u % 3`` and chooses 8 of its
    items (with probability ∝ ``rank^-skew`` within the genre) and one item at random; the
    last ``cold`` items have no events. With ``user_features``, each user's ``taste`` column
    names their genre. With ``names``, a second item field ``name`` has one label per item
    (as rare title words do): it tells warm items apart but says nothing of a cold item."""
    rng = np.random.default_rng(seed)
    genre = np.arange(n_items) % 3
    warm = n_items - cold
    rows = []
    for u in range(n_users):
        pool = np.flatnonzero((genre == u % 3) & (np.arange(n_items) < warm))
        p = (np.arange(len(pool)) + 1.0) ** -skew
        picks = rng.choice(pool, size=8, replace=False, p=p / p.sum())
        for i in {*picks.tolist(), int(rng.integers(warm))}:
            rows.append((f"u{u}", f"i{i}"))
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=np.nan,
                                                                       feedback=1.0)
    items = pd.DataFrame({"genres": [[g] for g in GENRES[genre]]},
                         index=pd.Index([f"i{i}" for i in range(n_items)], name="id"))
    kinds = {"genres": FeatureKind.MULTI}
    if names:
        items["name"] = [f"n{i}" for i in range(n_items)]
        kinds["name"] = FeatureKind.CATEGORICAL
    users = None
    if user_features:
        users = pd.DataFrame({"taste": GENRES[np.arange(n_users) % 3]},
                             index=pd.Index([f"u{u}" for u in range(n_users)], name="id"))
    return TrainingData.from_interactions(
        pairs, items=items, item_feature_kinds=kinds, users=users,
        user_feature_kinds={"taste": FeatureKind.CATEGORICAL} if user_features else None)


def genre_of(data: TrainingData, items: np.ndarray) -> np.ndarray:
    return np.array([int(str(data.items.ids[i])[1:]) % 3 for i in items])


@pytest.fixture(scope="module")
def planted() -> TrainingData:
    return genre_data()


@pytest.fixture(scope="module")
def learned(planted) -> TwoTower:
    return TwoTower(**SMALL).fit(planted)


def test_it_learns_the_planted_genres(learned, planted):
    idx, _ = learned.recommend_indices(np.arange(planted.n_users), 5)
    liked = np.array([int(str(u)[1:]) % 3 for u in planted.users.ids])
    share = (genre_of(planted, idx.ravel()).reshape(idx.shape) == liked[:, None]).mean()
    assert share > 0.9
    assert learned.training_["validation_ndcg@10"] > 0.1


@pytest.mark.parametrize("params", [{"use_item_ids": False}, {"id_dropout": 0.3}],
                         ids=["content", "id-dropout"])
def test_a_cold_item_is_placed_by_its_features(planted, params):
    """Items without events (the last six) get vectors from their genre: closest to the warm
    items of their genre, and ranked first among cold items for that genre's fans."""
    model = TwoTower(**SMALL | params).fit(planted)
    cold = np.flatnonzero(planted.item_counts() == 0)
    warm = np.flatnonzero(planted.item_counts() > 0)
    sims = model.similarity(cold)[:, warm]
    same = genre_of(planted, cold)[:, None] == genre_of(planted, warm)[None, :]
    for row in range(len(cold)):
        assert sims[row][same[row]].mean() > sims[row][~same[row]].mean() + 0.2
    fans = np.arange(planted.n_users)
    top, _ = model.recommend_indices(fans, 1, candidates=cold)
    liked = np.array([int(str(u)[1:]) % 3 for u in planted.users.ids])
    assert (genre_of(planted, top[:, 0]) == liked).mean() > 0.9


def test_without_ids_or_features_there_is_nothing_to_learn_from():
    pairs = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"], "rating": np.nan,
                          "feedback": 1.0})
    with pytest.raises(DataError, match="needs item features"):
        TwoTower(use_item_ids=False).fit(TrainingData.from_interactions(pairs))


def test_the_loss_by_hand():
    """Two users, their two positives, one uniform negative; the log-Q correction subtracts
    log Q from every in-batch logit, the positive's included; an accidental hit is masked."""
    from recengine.models.towers import sampled_softmax_loss

    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    negatives = torch.tensor([[0.8, 0.6]])
    t, log_q, neg_q = 0.5, torch.tensor([0.1, -0.3]), -1.0
    loss = sampled_softmax_loss(users, positives, torch.tensor([3, 5]), t, log_q=log_q,
                                negatives=negatives, negative_ids=torch.tensor([7]),
                                negative_log_q=neg_q)
    logits = (users @ torch.cat([positives, negatives]).T) / t - torch.tensor([0.1, -0.3, -1.0])
    expected = -(torch.log_softmax(logits, dim=1)[[0, 1], [0, 1]]).mean()
    assert torch.allclose(loss, expected)
    # the same item twice in a batch: the other copy is not a negative, nor is the negative
    hit = sampled_softmax_loss(users, positives, torch.tensor([3, 3]), t,
                               negatives=negatives, negative_ids=torch.tensor([3]))
    assert torch.allclose(hit, torch.tensor(0.0))


def test_log_q_correction_gives_popular_items_back_their_due():
    """In-batch negatives are drawn by popularity, so the uncorrected softmax pushes popular
    items down; corrected, the lists hold more popular items."""
    data = genre_data(skew=1.5, n_users=180)
    counts = data.item_counts()
    users = np.arange(data.n_users)

    def popularity_of_lists(logq: bool) -> float:
        model = TwoTower(**SMALL | {"logq_correction": logq, "random_negatives": 0}).fit(data)
        idx, _ = model.recommend_indices(users, 5)
        return float(counts[idx].mean())

    assert popularity_of_lists(True) > 1.2 * popularity_of_lists(False)


def test_the_same_seed_gives_the_same_model(planted):
    a = TwoTower(**TINY).fit(planted)
    b = TwoTower(**TINY).fit(planted)
    np.testing.assert_array_equal(a.item_vectors_, b.item_vectors_)
    c = TwoTower(**TINY).fit(planted, options=TrainingOptions(seed=1))
    assert not np.array_equal(a.item_vectors_, c.item_vectors_)


def test_a_new_user_and_live_events_are_scored_from_the_history(learned, planted):
    horror = [f"i{i}" for i in (2, 5, 8, 11)]
    ids, _ = learned.recommend_history(horror, 5)
    assert (genre_of(planted, planted.items.index(ids)) == 2).all()
    # a drama fan who has just watched horror films, each three times (their nine training
    # films against eighteen events): the live events move the answer
    before, _ = learned.recommend_query(Query(user="u0"), 5)
    events = [Event(item) for item in [*horror, "i14", "i17"] * 3]
    after, _ = learned.recommend_query(Query(user="u0", history=events), 5)
    assert (genre_of(planted, planted.items.index(before)) == 0).all()
    assert (genre_of(planted, planted.items.index(after)) == 2).sum() >= 3


def test_request_time_user_features_serve_a_user_without_history():
    data = genre_data(user_features=True)
    model = TwoTower(**SMALL).fit(data)
    assert model.supports(Capability.USER_FEATURES)
    for taste, code in (("comedy", 1), ("horror", 2)):
        queries = model.queries_from(Query(user="newcomer", user_features={"taste": taste}))
        assert model.answers(queries).all()
        ids, _ = model.recommend_query(Query(user="newcomer", user_features={"taste": taste}),
                                       5)
        assert (genre_of(data, data.items.index(ids)) == code).mean() >= 0.8
    assert not model.answers(model.queries_from(Query(user="stranger"))).any()


def test_retrieval_vectors_are_the_scores_and_the_graph_agrees(learned, planted):
    queries = planted.queries(np.arange(planted.n_users))
    vectors, offsets = learned._embed(queries)
    np.testing.assert_allclose(vectors @ learned._item_vectors().T + offsets[:, None],
                               learned._score(queries), rtol=1e-5, atol=1e-6)
    exact, _ = learned.recommend_indices(np.arange(planted.n_users), 5)
    indexed = TwoTower(learned.config).set_state(
        planted.users, planted.items, *learned.get_state(), planted).build_index()
    approximate, _ = indexed.recommend_indices(np.arange(planted.n_users), 5)
    assert (exact == approximate).mean() > 0.95


def test_save_load_with_user_features_and_ids(tmp_path):
    data = genre_data(user_features=True, n_users=60)
    model = TwoTower(**TINY | {"use_user_ids": True}).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"), histories=data)
    queries = data.queries(np.arange(data.n_users))
    np.testing.assert_array_equal(model._score(queries), loaded._score(queries))
    request = Query(user="newcomer", user_features={"taste": "horror"}, history=[Event("i2")])
    assert (model.recommend_query(request, 5)[0].tolist()
            == loaded.recommend_query(request, 5)[0].tolist())


def test_search_space_leaves_out_id_dropout_without_ids():
    assert "id_dropout" in TwoTower.search_space({})
    assert "id_dropout" not in TwoTower.search_space({"use_item_ids": False})


def test_search_space_tunes_min_feature_items_only_with_item_features():
    assert TwoTower.search_space({})["min_feature_items"] == ("int", 1, 100, True)
    assert "min_feature_items" not in TwoTower.search_space({"use_item_features": False})


def test_features_on_too_few_warm_items_are_left_out():
    """Each cold item's name is on no warm item: left out, cold items of one genre are known
    by their genre alone and get one vector; kept, their untrained names set them apart."""
    data = genre_data(names=True)
    cold = np.flatnonzero(data.item_counts() == 0)
    comedies = cold[genre_of(data, cold) == 1]

    def vectors(min_items: int) -> np.ndarray:
        params = TINY | {"min_feature_items": min_items, "item_encoder": {"min_count": 1}}
        return TwoTower(**params).fit(data).item_vectors_[comedies]

    left_out, kept = vectors(1), vectors(0)
    np.testing.assert_allclose(left_out[0], left_out[1], atol=1e-6)
    assert not np.allclose(kept[0], kept[1])


def test_a_cold_item_is_ranked_by_its_genre_not_by_a_name_no_warm_item_shares():
    """Known by features only, with a field naming each item (an id in disguise): the names
    left out, the fans' genre comes first among the cold items."""
    data = genre_data(names=True)
    model = TwoTower(**SMALL | {"use_item_ids": False, "min_feature_items": 2,
                                "item_encoder": {"min_count": 1}}).fit(data)
    cold = np.flatnonzero(data.item_counts() == 0)
    liked = np.array([int(str(u)[1:]) % 3 for u in data.users.ids])
    top, _ = model.recommend_indices(np.arange(data.n_users), 1, candidates=cold)
    assert (genre_of(data, top[:, 0]) == liked).mean() > 0.9


def test_a_content_model_without_features_left_says_which_knob():
    with pytest.raises(DataError, match="lower min_feature_items"):
        TwoTower(**TINY | {"use_item_ids": False, "min_feature_items": 1000}).fit(
            genre_data(n_users=20))


def test_min_feature_items_must_not_be_negative():
    with pytest.raises(DataError, match="min_feature_items"):
        TwoTower(min_feature_items=-1)


def test_progress_is_reported_per_epoch():
    calls = []
    TwoTower(**TINY | {"patience": 10}).fit(small_data(),
                                              progress=lambda *a: calls.append(a))
    assert calls == [("training two-tower", e, 4) for e in range(1, 5)]

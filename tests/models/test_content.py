"""The content-based recommender: conformance, plus what content filtering promises."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.loaders import load_movielens_latest_small
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.evaluation.evaluator import evaluate
from recengine.models import RandomItems, Recommender
from recengine.models.content import ContentBased
from recengine.pipeline.prepare import prepare
from tests.models.conformance import RecommenderConformance


def genre_of(data: TrainingData) -> np.ndarray:
    return data.item_features["genres"].str[0].to_numpy()


class TestContentBased(RecommenderConformance):
    model_class = ContentBased
    # not the defaults, so the JSON and save/load round trips carry a tuple and a dict
    params: ClassVar[dict[str, object]] = {"columns": ("genres",), "weights": {"genres": 2.0}}

    def test_users_get_their_genre_first(self, model, data):
        genre = genre_of(data)
        for u in range(data.n_users):  # the genre with the most feedback in u's history
            row = data.feedback[[u]]
            seen = row.indices
            liked = pd.Series(row.data).groupby(genre[seen]).sum().idxmax()
            n = min(3, int((genre == liked).sum()) - int((genre[seen] == liked).sum()))
            idx, _ = model.recommend_indices(np.array([u]), n)
            assert n > 0 and (genre[idx[0]] == liked).all(), u

    def test_equal_features_are_ordered_by_popularity(self, model, data):
        genre, counts = genre_of(data), data.item_counts()
        idx, _ = model.recommend_indices(np.array([0]), data.n_items, exclude_seen=False)
        same = idx[0][genre[idx[0]] == genre[idx[0][0]]]
        assert np.all(np.diff(counts[same]) <= 0)
        assert counts[same[0]] > counts[same[-1]]

    def test_items_without_events_are_recommended_by_content(self, model, data):
        fresh = np.arange(data.n_items - 3, data.n_items)  # in the catalogue, never chosen
        assert data.item_counts()[fresh].sum() == 0
        _, scores = model.recommend_indices(np.arange(data.n_users), data.n_items,
                                            candidates=fresh)
        assert (scores[:, :3] > 0.99).any()  # some user's genre is a fresh item's genre

    def test_similar_items_share_features(self, model, data):
        genre = genre_of(data)
        for item in ("i0", "i1", "i2"):
            i = int(data.items.index([item])[0])
            n = int((genre == genre[i]).sum()) - 1
            ids, scores = model.similar_items(item, n)
            assert (genre[data.items.index(ids)] == genre[i]).all()
            assert scores.min() > 0.99  # one genre each: identical vectors, cosine 1

    def test_new_users_history_gives_their_profile(self, model, data):
        genre = genre_of(data)
        comedies = data.items.ids[genre == "comedy"][:3].tolist()
        assert model.profile(comedies)[0][0] == "genres=comedy"
        ids, _ = model.recommend_history(comedies, 4)
        assert (genre[data.items.index(ids)] == "comedy").all()

    def test_profile_of_a_user_equals_profile_of_their_history(self, model, data):
        row = data.feedback[[5]]
        history = dict(zip(data.items.id_of(row.indices), row.data.tolist(), strict=True))
        names, weights = zip(*model.profile("u5", None), strict=True)
        again, weights_again = zip(*model.profile(history, None), strict=True)
        assert names == again and len(names) > 1
        np.testing.assert_allclose(weights, weights_again, rtol=1e-6)

    def test_no_history_gets_the_popular_content(self, model, data):
        genre = genre_of(data)
        mass = pd.Series(data.item_counts()).groupby(genre).sum()
        top = model.profile([])[0][0]
        assert top == f"genres={mass.idxmax()}"
        ids, scores = model.recommend_history([], 3)
        assert np.isfinite(scores).all() and (genre[data.items.index(ids)] == mass.idxmax()).all()
        i = data.items.index(ids[:1])
        assert model.explain_history([], ids[:1].tolist())[0].startswith("popular content: ")
        assert len(i) == 1

    def test_audience_agrees_with_the_generic_pass_over_users(self, model):
        items = np.array([0, 4, 27])
        np.testing.assert_allclose(model._item_scores(items),
                                   Recommender._item_scores(model, items), rtol=1e-5)

    def test_the_encoder_is_saved_for_new_items(self, model, data, tmp_path):
        new = pd.DataFrame({"genres": [["horror"], ["western"]]})
        x = model.encoder_.transform(new)
        names = model.feature_names_.tolist()
        # one label per item: its block is that column at the genres weight, 2
        assert x[[0], [names.index("genres=horror")]] == pytest.approx(2.0)
        assert x[[1], [names.index("genres=<other>")]] == pytest.approx(2.0)
        loaded = Recommender.load(model.save(tmp_path / "m"))
        assert loaded.feature_names_.tolist() == names
        again = loaded.encoder_.transform(new)
        assert (again != x).nnz == 0 and again.shape == x.shape

    def test_needs_item_features(self):
        pairs = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "rating": [1.0],
                              "feedback": [1.0]})
        with pytest.raises(DataError, match="no features to encode"):
            ContentBased().fit(TrainingData.from_interactions(pairs))


@pytest.fixture(scope="module")
def films() -> TrainingData:
    """One user who loves two science-fiction films and tolerates a comedy."""
    pairs = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "item_id": ["a", "b", "c", "f"],
                          "rating": float("nan"), "feedback": [5.0, 5.0, 1.0, 1.0]})
    items = pd.DataFrame(
        {"genres": [["Sci-Fi", "Drama"], ["Sci-Fi"], ["Comedy"], ["Sci-Fi", "Drama", "Comedy"],
                    ["Comedy"], ["Western"], ["Drama"]],
         "plot": ["lost at sea", "sea monsters", "a wedding", "sea of stars", "a wedding again",
                  "cattle", "the sea"]},
        index=pd.Index(list("abcdefg"), name="id"))
    kinds = {"genres": FeatureKind.MULTI, "plot": FeatureKind.TEXT}
    return TrainingData.from_interactions(pairs, items=items, item_feature_kinds=kinds)


def test_profile_weights_by_hand(films):
    model = ContentBased(columns=("genres",), min_count=1).fit(films)
    # item vectors over (Sci-Fi, Drama, Comedy): a = (1, 1, 0)/√2, b = (1, 0, 0), c = (0, 0, 1)
    raw = 5 * np.array([1, 1, 0]) / np.sqrt(2) + 5 * np.array([1, 0, 0]) + np.array([0, 0, 1])
    expected = raw / np.linalg.norm(raw)
    profile = model.profile("u")
    assert [name for name, _ in profile] == ["genres=Sci-Fi", "genres=Drama", "genres=Comedy"]
    np.testing.assert_allclose([w for _, w in profile], expected, rtol=1e-5)
    d = np.array([1, 1, 1]) / np.sqrt(3)
    assert model.score(["u"], ["d"])[0] == pytest.approx(expected @ d, abs=1e-5)


def test_explanations_name_the_top_shared_features(films):
    model = ContentBased(columns=("genres",), min_count=1).fit(films)
    assert model.explain("u", ["d", "e", "f"]) == [
        "because you like Sci-Fi and Drama",  # d shares all three; Sci-Fi, Drama weigh most
        "because you like Comedy",
        "shares no feature with your taste profile",
    ]


def test_explanations_quote_text_terms(films):
    model = ContentBased(columns=("plot",), min_count=1).fit(films)
    assert model.explain("u", ["g"]) == ['because you like "sea"']


def test_movielens_content_beats_random(require_dataset):
    dataset, _ = load_movielens_latest_small(require_dataset("ml-latest-small"))
    prepared = prepare(dataset, "stratified", seed=42)
    models = {"content": ContentBased(columns=("genres", "tags")), "random": RandomItems()}
    result = evaluate(models, prepared.data, prepared.split, ks=[10], curve_ks=[10])
    ndcg = {name: r.metrics["ndcg@10"] for name, r in result.models.items()}
    assert ndcg["content"] > 2 * ndcg["random"], ndcg

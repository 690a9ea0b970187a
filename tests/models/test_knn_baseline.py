"""kNN with baselines: the interface, the formula by hand, support shrinkage, and histories."""

from __future__ import annotations

import pandas as pd
import pytest

from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import Bias, KNNBaseline
from tests.models.conformance import RecommenderConformance, small_data


class TestKNNBaseline(RecommenderConformance):
    model_class = KNNBaseline


def _ratings(rows: list[tuple[str, str, float]]) -> TrainingData:
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return TrainingData.from_interactions(pairs.assign(feedback=pairs["rating"]))


#: a and b go together (each user rates both alike, around their own mean); c is unrelated.
TWINS = _ratings([("u", "a", 5.0), ("u", "b", 5.0), ("u", "c", 3.0),
                  ("v", "a", 1.0), ("v", "b", 1.0), ("v", "c", 3.0),
                  ("w", "a", 5.0), ("w", "c", 2.0), ("x", "a", 1.0), ("x", "c", 4.0)])


def test_a_rating_is_its_baseline_plus_what_similar_rated_items_say():
    model = KNNBaseline(shrinkage=0.0, damping=0.0).fit(TWINS)
    bias = Bias(damping=0.0).fit(TWINS)
    # w loved a, x hated it: b, a's twin, goes above its baseline for w and below it for x
    w, x = model.score(["w", "x"], ["b", "b"])
    base_w, base_x = bias.score(["w", "x"], ["b", "b"])
    assert w > base_w + 0.5 and x < base_x - 0.5
    # by hand: b's only neighbour among w's items is a (c is unrelated), so the offset is
    # w's residual on a whatever the similarity's size
    residual_a = 5.0 - bias.score(["w"], ["a"])[0]
    assert w == pytest.approx(base_w + residual_a, abs=1e-5)


def test_support_shrinkage_weakens_pairs_few_users_rated():
    loose = KNNBaseline(shrinkage=0.0).fit(TWINS).similarity_t_.toarray()
    shrunk = KNNBaseline(shrinkage=10.0).fit(TWINS).similarity_t_.toarray()
    a, b = TWINS.items.index(["a", "b"])
    # two users rated both a and b: the similarity is scaled by 2 / (2 + 10)
    assert shrunk[a, b] == pytest.approx(loose[a, b] * 2 / 12, rel=1e-5)


def test_a_new_history_is_scored_without_refitting():
    model = KNNBaseline(shrinkage=0.0, damping=0.0).fit(TWINS)
    fan, critic = (model.history_queries({"a": r, "c": 3.0}) for r in (5.0, 1.0))
    b = TWINS.items.index(["b"])[0]
    assert model.scores(fan)[0, b] > model.scores(critic)[0, b] + 1.0


def test_needs_ratings():
    data = small_data()
    implicit = TrainingData(data.users, data.items, data.feedback, data.feedback[:, :0])
    with pytest.raises(DataError, match="needs explicit ratings"):
        KNNBaseline().fit(implicit)


def test_on_movielens_it_beats_the_bias_baseline(require_dataset):
    from recengine.data.loaders import load_dataset
    from recengine.data.splits import make_split
    from recengine.data.weighting import aggregate
    from recengine.evaluation.evaluator import evaluate
    from recengine.pipeline.prepare import training_data

    dataset, _ = load_dataset("movielens-100k", require_dataset("ml-100k"))
    split = make_split(aggregate(dataset.events, dataset.schema), "stratified", test_fraction=0.2,
                       seed=42)
    data = training_data(dataset, split.train)
    result = evaluate({"bias": Bias(), "knn": KNNBaseline()}, data, split, ks=[10])
    rmse = {name: r.metrics["rmse"] for name, r in result.models.items()}
    assert rmse["knn"] < rmse["bias"] - 0.02, rmse
    assert rmse["knn"] < 0.93, rmse

"""The knowledge-based recommender: conformance, ranking, explanations, and other models' scores.

Rankings are worked out by hand on the six rentals of ``test_constraints.rental_items``.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.training_data import TrainingData
from recengine.errors import DataError, RecengineWarning
from recengine.models import Popularity
from recengine.models.base import Recommender
from recengine.models.constraints import Catalog, constraint_to_json, parse_constraint
from recengine.models.knowledge import KnowledgeBased, apply_constraints, constraint_transform
from tests.models.conformance import RecommenderConformance
from tests.models.test_constraints import KINDS, rental_items

#: Users per rental: r0 5, r1 1, r2 3, r3 4, r4 0, r5 2.
POPULARITY = [5, 1, 3, 4, 0, 2]
CONSTRAINT = "bedrooms >= 2"  # r1 (3), r2 (4), r3 (2), r5 (5); not r0 (1) nor r4 (unknown)
PREFERENCES = 'prefer 1: bedrooms >= 3; 2: amenities has "pets allowed"'  # r1 3, r2 3, r5 1


class TestKnowledgeConformance(RecommenderConformance):
    """Every item qualifies here, so the unchanged interface checks all apply."""

    model_class = KnowledgeBased
    params: ClassVar[dict[str, object]] = {
        "constraint": 'not genres has "western"',
        "preferences": 'prefer 2: genres has "drama"; 1: genres has "comedy"',
    }


class TestKnowledgeConformanceRestricted(TestKnowledgeConformance):
    """A constraint that leaves about two thirds of the items."""

    params: ClassVar[dict[str, object]] = {
        "constraint": 'genres has any ("drama", "comedy")',
        "preferences": {"prefer": [{"weight": 1, "constraint": {
            "field": "genres", "op": "has", "value": "drama"}}]},
    }

    def test_exclude_seen_false_can_return_seen_items(self, model, data):
        """Overrides the interface check: exactly the qualifying items are ranked, seen or not."""
        allowed = Catalog.from_training_data(data).mask(self.params["constraint"])
        assert 5 < allowed.sum() < data.n_items
        idx, _ = model.recommend_indices(np.arange(data.n_users), data.n_items,
                                         exclude_seen=False)
        for row in idx:
            assert sorted(row[row >= 0].tolist()) == np.flatnonzero(allowed).tolist()


@pytest.fixture(scope="module")
def rentals() -> TrainingData:
    rows = [(f"u{u}", f"r{i}") for i, n in enumerate(POPULARITY) for u in range(n)]
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=np.nan,
                                                                        feedback=1.0)
    return TrainingData.from_interactions(pairs, items=rental_items(), item_feature_kinds=KINDS)


def rental_order(rentals: TrainingData) -> np.ndarray:
    """Indices of r0 … r5: r4 has no events, so the vocabulary puts it last."""
    return rentals.items.index([f"r{i}" for i in range(6)])


def in_vocabulary_order(rentals: TrainingData, values: list[float]) -> np.ndarray:
    """A score row given in rental order (r0 … r5), laid out by item index."""
    row = np.empty((1, rentals.n_items))
    row[0, rental_order(rentals)] = values
    return row


def ranked(model: Recommender, history: list[str] | None = None, n: int = 6) -> list[str]:
    ids, _ = model.recommend_history(history or [], n)
    return [i for i in ids.tolist() if i is not None]


def test_requirements_then_preferences_then_popularity(rentals):
    model = KnowledgeBased(constraint=CONSTRAINT, preferences=PREFERENCES).fit(rentals)
    # r1 and r2 both score 3: r2 is more popular. r3 is the most popular qualifying item, but
    # meets no preference, so it comes last.
    assert ranked(model) == ["r2", "r1", "r5", "r3"]


def test_without_the_popularity_tie_break_ties_go_to_the_lower_index(rentals):
    model = KnowledgeBased(constraint=CONSTRAINT, preferences=PREFERENCES,
                           fallback="none").fit(rentals)
    assert ranked(model) == ["r1", "r2", "r5", "r3"]
    scores = model.scores_[rental_order(rentals)]
    assert scores[1] == scores[2] == 3.0


def test_without_preferences_the_order_is_popularity(rentals):
    assert ranked(KnowledgeBased(constraint=CONSTRAINT).fit(rentals)) == ["r3", "r2", "r5", "r1"]
    assert ranked(KnowledgeBased().fit(rentals)) == ["r0", "r3", "r2", "r5", "r1", "r4"]


def test_failing_items_are_never_recommended(rentals):
    model = KnowledgeBased(constraint=CONSTRAINT).fit(rentals)
    scores = model.scores_[rental_order(rentals)]
    assert np.isneginf(scores[[0, 4]]).all() and np.isfinite(scores[[1, 2, 3, 5]]).all()
    assert ranked(model, ["r3"]) == ["r2", "r5", "r1"]  # the history is excluded too


def test_explanations_name_the_preferences_met(rentals):
    model = KnowledgeBased(constraint=CONSTRAINT, preferences=PREFERENCES).fit(rentals)
    assert model.explain("u0", ["r2", "r5", "r3", "r0"]) == [
        "3+ bedrooms, pets allowed", "3+ bedrooms",
        "meets the requirements; 4 of 5 users chose it", "does not meet the requirements"]
    assert KnowledgeBased().fit(rentals).explain("u0", ["r0"]) == [
        "popular: 5 of 5 users chose it"]


def test_save_load_keeps_the_explanations(rentals, tmp_path):
    model = KnowledgeBased(constraint=CONSTRAINT, preferences=PREFERENCES).fit(rentals)
    loaded = Recommender.load(model.save(tmp_path / "knowledge"), histories=rentals)
    assert loaded.config == model.config
    assert loaded.explain("u0", ["r2", "r3"]) == model.explain("u0", ["r2", "r3"])
    assert ranked(loaded) == ranked(model)


def test_config_stores_the_json_form(rentals):
    text = 'bedrooms >= 3 and (region == "Alpine Lakes" or near(36.6, -4.6, 30))'
    model = KnowledgeBased(constraint=text, preferences=PREFERENCES)
    assert model.config.constraint == constraint_to_json(parse_constraint(text))
    assert model.config.preferences["prefer"][1] == {
        "weight": 2, "constraint": {"field": "amenities", "op": "has", "value": "pets allowed"}}
    again = KnowledgeBased.Config.model_validate_json(model.config.model_dump_json())
    assert again == model.config
    assert KnowledgeBased(constraint=parse_constraint(text)).config == KnowledgeBased(
        constraint=text).config
    assert KnowledgeBased(preferences="prefer").config.preferences is None


@pytest.mark.parametrize(("params", "column", "message"), [
    ({"constraint": "bedrooms => 3"}, "constraint", "unexpected character '=' (comparisons "
                                                     "are ==, !=, <, <=, >, >=) at offset 9"),
    ({"constraint": {"and": [{"field": "a", "op": "=", "value": 1}]}}, "constraint",
     "at and[0].op: unknown operator '='"),
    ({"constraint": 3}, "constraint", "a constraint is a string, a JSON object"),
    ({"preferences": "prefer 2 bedrooms >= 3"}, "preferences", "expected ':'"),
    ({"fallback": "random"}, "fallback", "invalid knowledge parameter"),
])
def test_invalid_config_is_a_data_error(params, column, message):
    with pytest.raises(DataError) as info:
        KnowledgeBased(**params)
    assert info.value.column == column
    assert message in info.value.message


def test_fields_are_checked_against_the_catalogue_at_fit(rentals):
    with pytest.raises(DataError, match="unknown field 'bedroom' \\(did you mean 'bedrooms'"):
        KnowledgeBased(constraint="bedroom >= 3").fit(rentals)


def test_an_impossible_constraint_warns_with_a_relaxation(rentals):
    model = KnowledgeBased(constraint='bedrooms >= 9 and region == "Alpine Lakes"')
    with pytest.warns(RecengineWarning, match="matches no item; dropping bedrooms >= 9 would "
                                              "give 2 items"):
        model.fit(rentals)
    assert ranked(model) == []


def test_a_satisfiable_constraint_does_not_warn(rentals):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KnowledgeBased(constraint=CONSTRAINT).fit(rentals)


# -- on top of another model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def popularity(rentals) -> Popularity:
    return Popularity().fit(rentals)


def test_apply_constraints_masks_normalises_and_reweights(rentals, popularity):
    catalog = Catalog.from_training_data(rentals)
    scores = np.array(popularity._score(rentals.queries(np.array([0, 1]))))
    out = apply_constraints(scores, catalog, CONSTRAINT, 'prefer 1: amenities has "pets allowed"')
    # qualifying popularity r1 1, r2 3, r3 4, r5 2 → (s - 1) / 3, plus 1 for pets (r1, r2)
    expected = [-np.inf, 1.0, 2 / 3 + 1, 1.0, -np.inf, 1 / 3]
    np.testing.assert_allclose(out[:, rental_order(rentals)], [expected, expected], rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == scores.shape


def test_weight_zero_only_filters(rentals, popularity):
    catalog = Catalog.from_training_data(rentals)
    scores = in_vocabulary_order(rentals, [5.0, 1.0, 3.0, 4.0, 0.0, 2.0])
    out = apply_constraints(scores, catalog, {"field": "bedrooms", "op": ">=", "value": 2},
                            PREFERENCES, weight=0.0)
    np.testing.assert_allclose(out[:, rental_order(rentals)],
                               [[-np.inf, 0.0, 2 / 3, 1.0, -np.inf, 1 / 3]], rtol=1e-6)


def test_non_finite_scores_stay_out(rentals):
    catalog = Catalog.from_training_data(rentals)
    scores = in_vocabulary_order(rentals, [np.nan, 1.0, -np.inf, 3.0, 9.0, np.inf])
    out = apply_constraints(scores, catalog, CONSTRAINT)  # r4 (9.0) fails the constraint
    np.testing.assert_allclose(out[:, rental_order(rentals)],
                               [[-np.inf, 0.0, -np.inf, 1.0, -np.inf, -np.inf]])


def test_constraint_transform_plugs_into_any_model(rentals, popularity):
    transform = constraint_transform(Catalog.from_training_data(rentals), CONSTRAINT,
                                     'prefer 1: amenities has "pets allowed"')
    idx, _ = popularity.recommend_indices(np.array([4]), 6, exclude_seen=False,
                                          transform=transform)
    # from test_apply_constraints: r2 1.67, r1 1 and r3 1 (tie: lower index), r5 0.33
    assert rentals.items.id_of(idx[0]).tolist() == ["r2", "r1", "r3", "r5", None, None]


def test_scores_must_cover_the_catalogue(rentals):
    with pytest.raises(DataError, match="scores cover 4 items, the catalogue 6"):
        apply_constraints(np.zeros((1, 4)), Catalog.from_training_data(rentals), CONSTRAINT)

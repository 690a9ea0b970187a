"""Business rules on any model's scores, and the fallback chain that always fills k slots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import WALS, CategoryPopularity, Popularity
from recengine.models.fallback import FallbackChain
from recengine.models.rules import RuleEngine, parse_rules


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """Ten items; item i was chosen by 10 - i users, so popularity ranks i0 > i1 > ... > i9."""
    rows = [(f"u{u}", f"i{i}") for i in range(10) for u in range(10 - i)]
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=np.nan,
                                                                        feedback=1.0)
    items = pd.DataFrame({
        "region": ["north", "north", "north", "south", "south", "east", "east", "west",
                   "west", "west"],
        "tags": [["a"], ["a", "b"], ["b"], [], ["a"], ["c"], [], ["b"], ["c"], ["a"]],
        "listed": pd.to_datetime(["2024-01-01"] * 9 + ["2024-12-31"]),
    }, index=pd.Index([f"i{i}" for i in range(10)], name="id"))
    kinds = {"region": FeatureKind.CATEGORICAL, "tags": FeatureKind.MULTI,
             "listed": FeatureKind.DATE}
    return TrainingData.from_interactions(pairs, items=items, item_feature_kinds=kinds)


@pytest.fixture(scope="module")
def popularity(data) -> Popularity:
    return Popularity().fit(data)


def top(data, model, rules, n=5, user="u9") -> list[str]:
    engine = RuleEngine(parse_rules(rules), data.items, data.item_features)
    idx, _ = engine.recommend(model, model.users_.index([user]), n, exclude_seen=False)
    return data.items.id_of(idx[0][idx[0] >= 0]).tolist()


def test_no_rules_is_the_model_ranking(data, popularity):
    assert top(data, popularity, []) == ["i0", "i1", "i2", "i3", "i4"]


def test_exclude_by_id_and_by_attribute(data, popularity):
    rules = [{"kind": "exclude", "items": ["i0"]},
             {"kind": "exclude", "field": "region", "value": "north"},
             {"kind": "exclude", "field": "tags", "value": "c"}]
    assert top(data, popularity, rules) == ["i3", "i4", "i6", "i7", "i9"]


def test_boost_and_bury(data, popularity):
    # normalised scores: i_k -> (10 - k - 1) / 9; west (i7 = 2/9, i9 = 0) x 10 puts i7 first
    boosted = top(data, popularity, [{"kind": "boost", "field": "region", "value": "west",
                                      "factor": 10}], n=3)
    assert boosted[0] == "i7"
    buried = top(data, popularity, [{"kind": "boost", "field": "tags", "value": "a",
                                     "factor": 0.01}], n=3)
    assert buried == ["i2", "i3", "i5"]  # i0, i1, i4 carry tag a


def test_freshness_lifts_new_items(data, popularity):
    # i9 is listed a year after the rest and is the least popular (normalised score ~1e-6);
    # with a 10-day half-life the others decay by 2^-36.5 ~ 1e-11, below it
    assert top(data, popularity, [{"kind": "freshness", "field": "listed",
                                   "half_life_days": 10}], n=1) == ["i9"]
    assert top(data, popularity, [{"kind": "freshness", "field": "listed",
                                   "half_life_days": 1000}], n=1) == ["i0"]


def test_diversity_cap_per_field(data, popularity):
    assert top(data, popularity, [{"kind": "max_per", "field": "region", "n": 1}], n=4) == [
        "i0", "i3", "i5", "i7"]
    # multi-valued: at most one item per tag label; i3 and i6 have no tags, so never capped
    assert top(data, popularity, [{"kind": "max_per", "field": "tags", "n": 1}], n=4) == [
        "i0", "i2", "i3", "i5"]


def test_pin_puts_an_item_at_its_position(data, popularity):
    assert top(data, popularity, [{"kind": "pin", "item": "i8", "position": 2}], n=4) == [
        "i0", "i8", "i1", "i2"]


def test_mmr_prefers_items_unlike_those_chosen(data):
    model = CategoryPopularity(feature="region").fit(data)
    plain = top(data, model, [], n=3, user="u9")
    diverse = top(data, model, [{"kind": "mmr", "relevance_weight": 0.3}], n=3, user="u9")
    regions = data.item_features["region"]
    assert len(set(regions[diverse])) > len(set(regions[plain]))


def test_bad_rules_name_the_field(data):
    with pytest.raises(DataError) as err:
        parse_rules([{"kind": "boost", "field": "region", "value": "x", "factor": -1}])
    assert err.value.column == "rules[0].boost.factor"
    with pytest.raises(DataError, match="unknown item field 'colour'"):
        RuleEngine(parse_rules([{"kind": "boost", "field": "colour", "value": "x",
                                 "factor": 2}]), data.items, data.item_features)


def test_fallback_fills_k_for_unknown_users_and_after_exclusions(data):
    wals = WALS(factors=3, iterations=3, regularization=0.1).fit(data)
    pop = Popularity().fit(data)
    chain = FallbackChain([wals, pop])
    cold = chain.recommend("stranger", 5)
    assert [r.item for r in cold] == ["i0", "i1", "i2", "i3", "i4"]
    assert {r.source for r in cold} == {"popularity"}
    warm = chain.recommend("u9", 5)
    assert len(warm) == 5 and warm[0].source == "wals"
    engine = RuleEngine(parse_rules([{"kind": "exclude", "field": "region", "value": "north"}]),
                        data.items, data.item_features)
    ruled = FallbackChain([wals, pop], rules=engine).recommend("u9", 5)
    assert len(ruled) == 5 and not {"i0", "i1", "i2"} & {r.item for r in ruled}
    assert len({r.item for r in ruled}) == 5  # no item twice across the chain


def test_constraint_rules_require_and_exclude(data, popularity):
    engine = RuleEngine(parse_rules([{"kind": "require", "where": 'region in ("west", "east")'},
                                     {"kind": "exclude", "where": 'tags has "c"'}]),
                        data.items, data.item_features, data.item_feature_kinds)
    idx, _ = engine.recommend(popularity, popularity.users_.index(["u9"]), 5,
                              exclude_seen=False)
    assert data.items.id_of(idx[0][idx[0] >= 0]).tolist() == ["i6", "i7", "i9"]
    with pytest.raises(DataError, match="need the item feature kinds"):
        RuleEngine(parse_rules([{"kind": "require", "where": "region == 'x'"}]), data.items,
                   data.item_features)

"""Synthetic logs: deterministic, valid by the Dataset contract, with the structure promised.

Each structural test compares against a baseline that lacks the structure (a shuffle, or the
generator with the knob turned off), so it fails if the structure goes missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.dataset import Dataset
from recengine.data.schema import EVENT_COLUMNS, EventSchema, FeatureKind
from recengine.data.synthetic import (
    AMENITIES,
    PROPERTY_TYPES,
    REGIONS,
    SyntheticTruth,
    generate,
    generate_with_truth,
)
from recengine.errors import DataError

PAIR = ["user_id", "item_id"]


@pytest.fixture(scope="module")
def generated() -> tuple[Dataset, SyntheticTruth]:
    return generate_with_truth()  # the default size, as the demo sees it


@pytest.fixture(scope="module")
def data(generated) -> Dataset:
    return generated[0]


@pytest.fixture(scope="module")
def truth(generated) -> SyntheticTruth:
    return generated[1]


def pairs_of(events: pd.DataFrame) -> pd.DataFrame:
    return events[PAIR].drop_duplicates().reset_index(drop=True)


def top_decile_share(events: pd.DataFrame, n_items: int) -> float:
    counts = pairs_of(events)["item_id"].value_counts()
    return counts.iloc[: max(1, n_items // 10)].sum() / counts.sum()


def stays_in_order(events: pd.DataFrame) -> pd.DataFrame:
    """Each (user, item) at its first touch, sorted by user and that time."""
    first = events.groupby(PAIR)["timestamp"].min().reset_index()
    return first.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def next_stay_hit_rates(events: pd.DataFrame, n: int = 10) -> tuple[float, float]:
    """Hit rates at ``n`` of (first-order transitions, popularity) for each test user's last stay.

    Transition counts and popularity come from the first half of the users; each user of the
    second half has their last stay predicted from the one before, items already stayed at
    excluded. Transitions back off to popularity (its share, below any count, breaks ties).
    """
    stays = stays_in_order(events)
    item = pd.factorize(stays["item_id"])[0]
    user = stays["user_id"].to_numpy()
    users = pd.unique(user)
    train = np.isin(user, users[: len(users) // 2])
    same = user[1:] == user[:-1]
    moves = same & train[1:]
    transitions = np.zeros((item.max() + 1,) * 2)
    np.add.at(transitions, (item[:-1][moves], item[1:][moves]), 1)
    popularity = np.bincount(item[train], minlength=len(transitions)).astype(float)
    popularity /= popularity.sum() + 1
    hits: list[list[bool]] = [[], []]
    for _, rows in stays[~train].groupby("user_id").indices.items():
        seen, last = item[~train][rows[:-1]], item[~train][rows[-1]]
        for k, score in enumerate((transitions[seen[-1]] + popularity, popularity.copy())):
            score[seen] = -np.inf
            hits[k].append(last in np.argsort(-score)[:n])
    return float(np.mean(hits[0])), float(np.mean(hits[1]))


def region_concentration(pairs: pd.DataFrame, regions: np.ndarray) -> float:
    """Mean over users of the Herfindahl index of their items' regions (1 = a single region)."""
    counts = pd.crosstab(pairs["user_id"].to_numpy(), regions).to_numpy()
    shares = counts / counts.sum(axis=1, keepdims=True)
    return float((shares**2).sum(axis=1).mean())


def test_same_seed_same_frames_other_seed_differs():
    a, b = generate(300, 120, seed=7), generate(300, 120, seed=7)
    for frame in ("events", "items", "users"):
        pd.testing.assert_frame_equal(getattr(a, frame), getattr(b, frame))
    c = generate(300, 120, seed=8)
    assert not a.events.equals(c.events)
    assert not a.items.equals(c.items)


def test_events_follow_the_dataset_contract(data):
    ev = data.events
    assert data.name == "synthetic"
    assert tuple(ev.columns) == (*EVENT_COLUMNS, "device")
    assert [str(ev[c].dtype) for c in ev.columns] == [
        "object", "object", "object", "float64", "datetime64[s]", "object"]
    for column in ("user_id", "item_id", "event_type", "device"):
        assert ev[column].map(type).eq(str).all()
    start, end = pd.Timestamp("2025-01-01"), pd.Timestamp("2026-01-01")
    assert data.has_timestamps
    assert ev["timestamp"].min() >= start and ev["timestamp"].max() < end
    assert ev["timestamp"].max() < pd.Timestamp.now(tz="UTC").tz_localize(None)
    for table, name, n in ((data.users, "user_id", 2000), (data.items, "item_id", 800)):
        assert table.index.name == name and table.index.dtype == object
        assert len(table) == n and table.index.is_unique
        assert set(ev[name]) <= set(table.index)
    assert pairs_of(ev).groupby("user_id").size().min() >= 3
    assert ev["user_id"].nunique() == len(data.users)  # every traveller left a trace


def test_metadata_columns_have_their_declared_kinds(data):
    for table, kinds in ((data.items, data.item_features), (data.users, data.user_features)):
        assert list(table.columns) == list(kinds)
        for column, kind in kinds.items():
            values = table[column]
            if kind == FeatureKind.NUMERIC:
                assert values.dtype == np.float64 and values.notna().all()
            elif kind == FeatureKind.DATE:
                assert str(values.dtype) == "datetime64[s]"
                assert values.max() < pd.Timestamp("2025-01-01")  # listed before any event
            elif kind == FeatureKind.MULTI:
                assert values.map(lambda v: isinstance(v, list) and set(v) <= set(AMENITIES)).all()
            else:
                assert values.dtype == object and values.map(type).eq(str).all()
    items = data.items
    assert set(items["region"]) == {r.name for r in REGIONS}
    assert set(items["property_type"]) <= {t.name for t in PROPERTY_TYPES}
    assert items["bedrooms"].between(1, 6).all() and (items["price_per_night"] > 0).all()
    assert set(data.users["segment"]) == {"family", "couple", "solo", "friends"}


def test_items_are_coherent(data):
    items = data.items
    centre = {r.name: r.centre for r in REGIONS}
    lat = items["region"].map(lambda r: centre[r][0])
    lon = items["region"].map(lambda r: centre[r][1])
    assert ((items["latitude"] - lat).abs() < 2).all()
    assert ((items["longitude"] - lon).abs() < 3).all()
    # price rises with bedrooms; ski-in only in the mountains
    assert np.corrcoef(items["bedrooms"], np.log(items["price_per_night"]))[0, 1] > 0.4
    skis = items[items["amenities"].map(lambda a: "ski-in" in a)]
    assert len(skis) > 0 and set(skis["region"]) == {"Alpine Lakes"}
    for row in items.itertuples():
        text = row.description
        assert row.region in text and row.property_type in text
        assert f"{int(row.bedrooms)}-bedroom" in text and text.endswith(".")
        assert row.region in row.title


def test_event_types_are_known_and_values_in_range(data):
    ev, types = data.events, EventSchema().event_types
    assert set(ev["event_type"]) == {"view", "dwell", "watch", "add-to-cart", "booking", "rating"}
    for name, group in ev.groupby("event_type"):
        spec, values = types[str(name)], group["value"]
        if spec.value_required:
            assert values.notna().all(), name
        present = values.dropna()
        if spec.min_value is not None:
            assert (present >= spec.min_value).all(), name
        if spec.max_value is not None:
            assert (present <= spec.max_value).all(), name
    ratings = ev.loc[ev["event_type"] == "rating", "value"]
    assert (ratings == np.rint(ratings)).all() and ratings.nunique() == 5
    assert ev.loc[ev["event_type"].isin(["view", "add-to-cart"]), "value"].isna().all()
    # most interactions are implicit, and not every chosen rental is booked
    booked = ev.loc[ev["event_type"] == "booking", PAIR].drop_duplicates()
    assert len(ratings) < 0.1 * len(ev) and len(booked) < 0.3 * len(pairs_of(ev))


def test_no_duplicate_events(data):
    assert not data.events.duplicated(["user_id", "item_id", "event_type", "timestamp"]).any()


def test_funnel_order_within_each_pair(data):
    ev = data.events
    firsts = ev.groupby([*PAIR, "event_type"])["timestamp"].agg(["min", "max", "size"])
    once = firsts.drop(["view", "dwell"], level="event_type")
    assert (once["size"] == 1).all()  # one watch, cart, booking and rating per pair at most
    first, last = firsts["min"].unstack(), firsts["max"].unstack()
    first_visit = first[["view", "dwell"]].min(axis=1)
    last_visit = last[["view", "dwell"]].max(axis=1)
    assert first_visit.notna().all()
    steps = [(first_visit, "watch"), (last_visit, "add-to-cart"), (first["add-to-cart"], "booking"),
             (first["booking"], "rating")]
    for before, step in steps:
        has = first[step].notna()
        assert has.any()
        assert before[has].notna().all(), f"{step} without its predecessor"
        assert (first.loc[has, step] > before[has]).all(), f"{step} out of order"


def test_item_popularity_and_user_activity_are_heavy_tailed(data):
    assert top_decile_share(data.events, len(data.items)) > 0.35
    per_user = pairs_of(data.events).groupby("user_id").size()
    assert per_user.max() / per_user.median() > 8
    # the statistic can fail: without base popularity and with choices near random, it does
    flat = generate_with_truth(n_users=400, n_items=200, popularity_sigma=0.0, temperature=20.0)[0]
    assert top_decile_share(flat.events, 200) < 0.2


def test_travellers_stick_to_their_regions(data, truth):
    pairs = pairs_of(data.events)
    regions = data.items["region"].reindex(pairs["item_id"]).to_numpy()
    shuffled = np.random.default_rng(0).permutation(regions)
    assert region_concentration(pairs, regions) > 1.3 * region_concentration(pairs, shuffled)
    preferred = truth.tastes["preferred_region"].reindex(pairs["user_id"]).to_numpy()
    assert (preferred == regions).mean() > 2 * (preferred == shuffled).mean()


def test_segments_choose_rentals_that_fit_group_and_budget(data, truth):
    pairs = pairs_of(data.events)
    segment = data.users["segment"].reindex(pairs["user_id"]).to_numpy()
    bedrooms = data.items["bedrooms"].reindex(pairs["item_id"]).to_numpy()
    mean = {s: bedrooms[segment == s].mean() for s in ("solo", "family", "friends")}
    assert mean["family"] > mean["solo"] + 0.6 and mean["friends"] > mean["solo"] + 0.6
    price = data.items["price_per_night"].reindex(pairs["item_id"]).to_numpy()
    budget = truth.tastes["budget"].reindex(pairs["user_id"]).to_numpy()
    assert np.corrcoef(np.log(price), np.log(budget))[0, 1] > 0.3


def test_latent_factors_align_with_features(data, truth):
    items = data.items
    labels = np.hstack([
        pd.get_dummies(items["region"]).to_numpy(float),
        pd.get_dummies(items["property_type"]).to_numpy(float),
        np.array([[a in have for a in AMENITIES] for have in items["amenities"]], dtype=float),
    ])
    factors = truth.item_factors
    fit = labels @ np.linalg.lstsq(labels, factors, rcond=None)[0]
    r2 = 1 - ((factors - fit) ** 2).sum() / ((factors - factors.mean(axis=0)) ** 2).sum()
    assert 0.3 < r2 < 0.8  # the features explain part, collaborative signal the rest
    assert truth.user_factors.shape == (len(data.users), factors.shape[1])


def test_bookings_and_ratings_follow_utility(data, truth):
    ev = data.events
    booked = ev.loc[ev["event_type"] == "booking", PAIR].assign(booked=1.0)
    chosen = truth.pairs.merge(booked, on=PAIR, how="left").fillna({"booked": 0.0})
    tercile = pd.qcut(chosen["utility"], 3, labels=False)
    rate = chosen.groupby(tercile)["booked"].mean().to_numpy()
    assert rate[2] > 3 * rate[0]
    rated = ev[ev["event_type"] == "rating"].merge(truth.pairs, on=PAIR)
    assert np.corrcoef(rated["value"], rated["utility"])[0, 1] > 0.4
    dwell = ev[ev["event_type"] == "dwell"].merge(chosen, on=PAIR)
    by_booking = dwell.groupby("booked")["value"].median()
    assert by_booking[1.0] > 1.3 * by_booking[0.0]  # observable: longer looks at what is booked


def test_first_touches_follow_the_order_of_stays(data, truth):
    stays = stays_in_order(data.events)
    steps = stays.merge(truth.pairs, on=PAIR, how="left")["step"]
    assert steps.notna().all()
    expected = stays.groupby("user_id").cumcount()
    assert (steps.to_numpy() == expected.to_numpy()).all()
    same_user = stays["user_id"].eq(stays["user_id"].shift())
    assert (stays["timestamp"].diff()[same_user] > pd.Timedelta(0)).all()  # strictly, no ties


def test_consecutive_stays_follow_onward_links(data, truth):
    onward = {(i, j) for i, row in truth.onward.iterrows() for j in row}

    def followed(events: pd.DataFrame) -> float:
        stays = stays_in_order(events)
        same = stays["user_id"].eq(stays["user_id"].shift()).to_numpy()[1:]
        moves = zip(stays["item_id"].to_numpy()[:-1][same], stays["item_id"].to_numpy()[1:][same],
                    strict=True)
        return float(np.mean([move in onward for move in moves]))

    assert truth.onward.shape == (len(data.items), 4)
    assert followed(data.events) > 0.3
    # the statistic can fail: the same travellers and picks, in random order, rarely follow on
    assert followed(generate(sequence_strength=0.0).events) < 0.1


def test_next_stay_is_predictable_from_the_last_only_with_sequence_strength(data):
    markov, popularity = next_stay_hit_rates(data.events)
    assert markov > 2 * popularity
    markov, popularity = next_stay_hit_rates(generate(sequence_strength=0.0).events)
    assert markov < 1.2 * popularity


def test_cheaper_listings_are_looked_at_on_phones_only_with_device_strength(data):
    def mobile_share_of_cheap_and_dear(dataset) -> tuple[float, float]:
        pairs = dataset.events.groupby(["user_id", "item_id"])["device"].agg(["first", "nunique"])
        assert (pairs["nunique"] == 1).all()  # one device per pair
        price = dataset.items["price_per_night"].reindex(pairs.index.get_level_values(1))
        cheap = (price < price.median()).to_numpy()
        mobile = (pairs["first"] == "mobile").to_numpy()
        return mobile[cheap].mean(), mobile[~cheap].mean()

    cheap, dear = mobile_share_of_cheap_and_dear(data)
    assert cheap > dear + 0.2
    flat = generate(600, 200, seed=3, device_strength=0.0)
    cheap, dear = mobile_share_of_cheap_and_dear(flat)
    assert abs(cheap - dear) < 0.05
    same = generate(600, 200, seed=3)  # devices drawn apart: the rest of the log unchanged
    pd.testing.assert_frame_equal(flat.events.drop(columns="device"),
                                  same.events.drop(columns="device"))


@pytest.mark.parametrize(("n_users", "mean"), [(2000, 40.0), (500, 15.0)])
def test_mean_events_per_user_is_roughly_respected(data, n_users, mean):
    dataset = data if mean == 40.0 else generate(n_users, 300, mean_events_per_user=mean)
    assert 0.8 * mean < len(dataset.events) / len(dataset.users) < 1.25 * mean


@pytest.mark.parametrize(("params", "column"), [
    ({"start": "not a date"}, "start"),
    ({"start": "2099-01-01"}, "start"),
    ({"n_items": 2}, "n_items"),
    ({"days": 0}, "days"),
])
def test_bad_parameters_raise_data_error(params, column):
    with pytest.raises(DataError) as caught:
        generate(**{"n_users": 10, "n_items": 10, **params})
    assert caught.value.column == column

"""The named dataset loaders, on the real files (skipped when the datasets folder is missing)."""

from __future__ import annotations

import gzip
import json
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data.dataset import Dataset
from recengine.data.loaders import (
    DATASETS,
    load_amazon_gift_cards,
    load_dataset,
    load_lastfm_2k,
    load_movielens_100k,
    load_movielens_latest_small,
)
from recengine.data.schema import FeatureKind
from recengine.data.validation import ValidationReport
from recengine.errors import DataError

Loaded = tuple[Dataset, ValidationReport]
Require = Callable[[str], Path]


@pytest.fixture(scope="module")
def ml100k(require_dataset: Require) -> Loaded:
    return load_movielens_100k(require_dataset("ml-100k"))


@pytest.fixture(scope="module")
def ml_latest(require_dataset: Require) -> Loaded:
    return load_movielens_latest_small(require_dataset("ml-latest-small"))


@pytest.fixture(scope="module")
def lastfm(require_dataset: Require) -> Loaded:
    return load_lastfm_2k(require_dataset("hetrec2011-lastfm-2k"))


@pytest.fixture(scope="module")
def amazon(require_dataset: Require) -> Loaded:
    return load_amazon_gift_cards(require_dataset("amazon-2018-gift-cards"))


def _all_strings(values: pd.Series | pd.Index) -> bool:
    return bool(pd.Series(values).map(lambda v: isinstance(v, str)).all())


def check_shape(data: Dataset, events: int, users: int, items_reviewed: int,
                catalogue: int, event_type: str) -> None:
    """Sizes and the canonical dtypes every loader promises."""
    ev = data.events
    assert len(ev) == events
    assert ev["user_id"].nunique() == users == len(data.users)
    assert ev["item_id"].nunique() == items_reviewed
    assert len(data.items) == catalogue
    assert set(ev["event_type"]) == {event_type}
    assert _all_strings(ev["user_id"]) and _all_strings(ev["item_id"])
    assert ev["value"].dtype == np.float64
    assert ev["timestamp"].dtype == "datetime64[s]"
    assert _all_strings(data.items.index) and _all_strings(data.users.index)
    assert data.items.index.is_unique and data.users.index.is_unique
    assert list(data.items.columns) == list(data.item_features)
    assert list(data.users.columns) == list(data.user_features)
    assert set(ev["item_id"]) <= set(data.items.index)


def check_lists(column: pd.Series) -> None:
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in column)


# --- MovieLens 100K --------------------------------------------------------------------------


def test_ml100k_counts_and_dtypes(ml100k: Loaded) -> None:
    data, report = ml100k
    check_shape(data, 100_000, 943, 1682, 1682, "rating")
    assert report.ok and report.rows_read == 100_000 + 1682 + 943
    assert data.has_timestamps
    assert data.events["value"].between(1, 5).all()
    assert data.events["timestamp"].min() == pd.Timestamp("1997-09-20 03:05:10")
    assert data.schema.event_types["rating"].max_value == 5
    assert data.item_features == {"title": FeatureKind.TEXT, "release_date": FeatureKind.DATE,
                                  "genres": FeatureKind.MULTI}
    assert data.user_features == {"age": FeatureKind.NUMERIC, "gender": FeatureKind.CATEGORICAL,
                                  "occupation": FeatureKind.CATEGORICAL,
                                  "zip": FeatureKind.CATEGORICAL}
    assert data.items["release_date"].dtype == "datetime64[s]"
    assert data.users["age"].dtype == np.float64
    check_lists(data.items["genres"])


def test_ml100k_items(ml100k: Loaded) -> None:
    items = ml100k[0].items
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert toy["release_date"] == pd.Timestamp("1995-01-01")
    assert items.loc["1373", "release_date"] == pd.Timestamp("1971-02-04")  # "4-Feb-1971"
    assert items.loc["543", "title"] == "Misérables, Les (1995)"  # Latin-1 in u.item
    assert items.loc["1633", "title"] == "Á köldum klaka (Cold Fever) (1994)"
    assert pd.isna(items.loc["267", "release_date"])  # the placeholder "unknown" movie
    assert items.loc["267", "genres"] == []  # its only flag is "unknown", which is no genre


def test_ml100k_users(ml100k: Loaded) -> None:
    users = ml100k[0].users
    assert users.loc["1"].to_dict() == {"age": 24.0, "gender": "M", "occupation": "technician",
                                        "zip": "85711"}
    assert users["age"].between(7, 73).all()
    assert users["occupation"].nunique() == 21


# --- MovieLens latest-small ------------------------------------------------------------------


def test_ml_latest_counts_and_dtypes(ml_latest: Loaded) -> None:
    data, report = ml_latest
    check_shape(data, 100_836, 610, 9724, 9742, "rating")
    assert report.ok
    assert sorted(data.events["value"].unique()) == [x / 2 for x in range(1, 11)]
    assert data.has_timestamps
    assert data.item_features == {"title": FeatureKind.TEXT, "year": FeatureKind.NUMERIC,
                                  "genres": FeatureKind.MULTI, "tags": FeatureKind.MULTI}
    assert data.items["year"].dtype == np.float64
    check_lists(data.items["genres"])
    check_lists(data.items["tags"])


def test_ml_latest_items(ml_latest: Loaded) -> None:
    items = ml_latest[0].items
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert items.loc["11", "title"] == "American President, The (1995)"  # quoted in the CSV
    assert (items["genres"].map(len) == 0).sum() == 34  # "(no genres listed)"
    assert math.isnan(items.loc[items["title"] == "Babylon 5", "year"].iloc[0])
    series = items["title"] == "Death Note: Desu nôto (2006–2007)"
    assert items.loc[series, "year"].iloc[0] == 2006  # a series counts from its first year


def test_ml_latest_tags(ml_latest: Loaded) -> None:
    tags = ml_latest[0].items["tags"]
    assert set(tags.loc["60756"]) == {"funny", "highly quotable", "will ferrell", "comedy"}
    assert (tags.map(len) > 0).sum() == 1572
    assert all(t == t.strip().lower() and t for ts in tags for t in ts)
    assert all(len(ts) == len(set(ts)) for ts in tags)


# --- Last.fm 2K ------------------------------------------------------------------------------


def test_lastfm_counts_and_dtypes(lastfm: Loaded) -> None:
    data, report = lastfm
    check_shape(data, 92_834, 1892, 17_632, 17_632, "play")
    assert report.ok
    assert data.events["timestamp"].isna().all() and not data.has_timestamps
    assert data.events["value"].min() == 1 and data.events["value"].max() == 352_698
    assert data.item_features == {"name": FeatureKind.TEXT, "tags": FeatureKind.MULTI}
    assert data.user_features == {}
    check_lists(data.items["tags"])


def test_lastfm_play_counts_and_names(lastfm: Loaded) -> None:
    data = lastfm[0]
    first = data.events.iloc[0]
    assert (first["user_id"], first["item_id"], first["value"]) == ("2", "51", 13883.0)
    assert data.items.loc["1686", "name"] == '"Weird Al" Yankovic'  # quotes kept as they are
    assert data.items.loc["2906", "name"] == 'Royce da 5\'9"'


def test_lastfm_tags(lastfm: Loaded) -> None:
    tags = lastfm[0].items["tags"]
    britney = tags.loc["289"]  # Britney Spears, the most played artist
    assert 0 < len(britney) <= 20 and britney[0] == "pop"
    assert tags.map(len).max() == 20
    assert (tags.map(len) == 0).sum() == 5499


# --- Amazon Gift Cards -----------------------------------------------------------------------


def test_amazon_counts_and_duplicates(amazon: Loaded) -> None:
    data, report = amazon
    duplicates = 3  # same reviewer, item and day (reviews differ, stars agree)
    check_shape(data, 2972 - duplicates, 458, 148, 1547, "rating")
    assert report.rows_read == 2972 + 1547
    assert report.counts() == {"duplicate": duplicates}
    assert all(issue.file.endswith("Gift_Cards_5.json.gz") for issue in report.issues)
    assert [issue.row for issue in report.issues] == [2006, 2824, 2829]
    assert data.has_timestamps
    assert data.items["price"].dtype == np.float64
    for name in ("also_buy", "also_view", "category"):
        check_lists(data.items[name])


def test_amazon_items(amazon: Loaded) -> None:
    items = amazon[0].items
    assert items.loc["B002BSHDJK", "price"] == 29.99
    assert items.loc["B001H53QE4", "price"] == 1250.0
    assert items["price"].notna().sum() == 358  # 362 non-empty, 4 hold page debris
    assert pd.isna(items.loc["B001BKEWF2", "price"])  # empty
    serendipity = items.loc["B001BKEWF2"]
    assert serendipity["brand"] == "Serendipity 3"
    assert serendipity["description"].startswith("Gift card for the purchase of goods")
    assert "Not valid for online purchases. Statements" in serendipity["description"]
    assert serendipity["category"] == ["Gift Cards"]
    assert len(items.loc["B004LLIKVU", "also_view"]) > 0


# --- file errors and row numbers -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_folder_names_it(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="dataset folder not found") as caught:
        load_dataset(name, missing)
    assert caught.value.file == str(missing)


@pytest.mark.parametrize(("name", "first_file"), [
    ("movielens-100k", "u.data"),
    ("movielens-latest-small", "ratings.csv"),
    ("lastfm-2k", "user_artists.dat"),
    ("amazon-gift-cards", "Gift_Cards_5.json.gz"),
])
def test_missing_file_names_it(name: str, first_file: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as caught:
        load_dataset(name, tmp_path)
    assert caught.value.file == str(tmp_path / first_file)


def _write(folder: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    for name, text in files.items():
        (folder / name).write_text(text, encoding=encoding)
    return folder


def test_headerless_rows_are_line_numbers(tmp_path: Path) -> None:
    flags = "|0|1"  # u.genre below lists two genres
    folder = _write(tmp_path, {
        "u.data": "1\t1\t5\t881250949\n1\t2\t9\t881250950\n",
        "u.genre": "unknown|0\nDrama|1\n\n",
        "u.item": f"1|Café (1995)|01-Jan-1995||url{flags}\n2|Two|||url{flags}\n",
        "u.user": "1|24|M|technician|85711\n",
    })
    (folder / "u.item").write_text((folder / "u.item").read_text(), encoding="latin-1")
    data, report = load_movielens_100k(folder)
    assert len(data.events) == 1
    assert [(i.row, i.column, i.problem) for i in report.issues] == [
        (2, "rating", "value out of range")]
    assert str(report.issues[0]).startswith(f"{folder / 'u.data'}, row 2, column 'rating'")
    assert data.items.loc["1", "title"] == "Café (1995)"
    assert data.items["genres"].tolist() == [["Drama"], ["Drama"]]


def test_header_counts_as_line_one(tmp_path: Path) -> None:
    folder = _write(tmp_path, {
        "ratings.csv": "userId,movieId,rating,timestamp\r\n"
                       "1,1,4.0,964982703\r\n1,2,7,964982704\r\n",
        "movies.csv": "movieId,title,genres\r\n1,Heat (1995),Action\r\n1,Heat again,Drama\r\n",
        "tags.csv": "userId,movieId,tag,timestamp\r\n1,1, Heist ,964982705\r\n",
    })
    data, report = load_movielens_latest_small(folder)
    assert [(i.file, i.row, i.column) for i in report.issues] == [
        (str(folder / "ratings.csv"), 3, "rating"), (str(folder / "movies.csv"), 3, "movieId")]
    assert data.items.loc["1"].to_dict() == {"title": "Heat (1995)", "year": 1995.0,
                                             "genres": ["Action"], "tags": ["heist"]}


def test_amazon_repeated_asin_keeps_first(tmp_path: Path) -> None:
    review = {"reviewerID": "R1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1529193600}
    products = [{"asin": "A1", "title": "First", "price": "$1,000.00", "category": ["x", "x"]},
                {"asin": "A1", "title": "Second", "price": "$5.00"},
                {"asin": "A2", "title": "Other", "price": "<div>", "description": ["a", "b"]}]
    for name, records in [("Gift_Cards_5.json.gz", [review]),
                          ("meta_Gift_Cards.json.gz", products)]:
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
    data, report = load_amazon_gift_cards(tmp_path)
    assert [(i.row, i.column, i.problem) for i in report.issues] == [(2, "asin", "duplicate")]
    assert data.items["title"].to_dict() == {"A1": "First", "A2": "Other"}
    assert data.items.loc["A1", "price"] == 1000.0 and math.isnan(data.items.loc["A2", "price"])
    assert data.items.loc["A1", "category"] == ["x"] and data.items.loc["A2", "category"] == []
    assert data.items.loc["A2", "description"] == "a b"
    assert pd.isna(data.items.loc["A1", "description"]) and pd.isna(data.items.loc["A1", "brand"])


def test_extra_field_names_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path, {"user_artists.dat": "userID\tartistID\tweight\n2\t51\t13\n2\t52\t1\t9\n"})
    with pytest.raises(DataError, match="Expected 3 fields in line 3, saw 4") as caught:
        load_lastfm_2k(tmp_path)
    assert (caught.value.file, caught.value.row) == (str(tmp_path / "user_artists.dat"), 3)


# --- registry --------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert list(DATASETS) == ["movielens-100k", "movielens-latest-small", "lastfm-2k",
                              "amazon-gift-cards"]


def test_unknown_name_lists_known() -> None:
    with pytest.raises(DataError, match="unknown dataset 'ml-1m'; known: movielens-100k, "
                                        "movielens-latest-small, lastfm-2k, amazon-gift-cards, "
                                        "synthetic"):
        load_dataset("ml-1m")


def test_real_dataset_needs_path() -> None:
    with pytest.raises(DataError, match="--path"):
        load_dataset("movielens-100k")


def test_synthetic_calls_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    events = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i1"]})
    seeds: list[int] = []

    def generate(seed: int = 0) -> Dataset:
        seeds.append(seed)
        return Dataset("synthetic", events)

    fake = types.ModuleType("recengine.data.synthetic")
    fake.generate = generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "recengine.data.synthetic", fake)
    data, report = load_dataset("synthetic", seed=7)
    assert seeds == [7] and data.name == "synthetic"
    assert (report.file, report.rows_read, report.rows_accepted) == ("synthetic", 2, 2)

"""Named loaders for MovieLens 100K and latest-small, Last.fm 2K, Amazon Gift Cards.

Each loader takes the folder holding a dataset's files as published and returns a
:class:`~recengine.data.dataset.Dataset` plus one
:class:`~recengine.data.validation.ValidationReport` merged over every file it validated. Events
always go through :func:`~recengine.data.validation.validate_events` and metadata through
:func:`~recengine.data.validation.validate_metadata`, so a bad row is named by file, row and
column exactly as for a user's own files. The published files are known to be clean, so they are
split with pandas' fast C parser instead of the record-by-record reader; the row numbers kept with
them are line numbers (a header is line 1), which holds because none of these files has blank
lines or quoted line breaks.

:func:`load_dataset` picks a loader by name, as the command line does.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.readers import read_table
from recengine.data.schema import EventSchema, FeatureKind
from recengine.data.validation import (
    ColumnMapping,
    RawTable,
    ValidationReport,
    parse_labels,
    validate_events,
    validate_metadata,
)
from recengine.errors import DataError

__all__ = [
    "DATASETS",
    "load_amazon_gift_cards",
    "load_dataset",
    "load_lastfm_2k",
    "load_movielens_100k",
    "load_movielens_latest_small",
]

Loader = Callable[[str | Path], tuple[Dataset, ValidationReport]]

#: Name of the generated dataset, which needs no folder.
SYNTHETIC = "synthetic"

#: Joins a JSON list into one string for ``validate_metadata`` to split; no source text has it.
_LIST_SEP = "\x1f"

_TEXT, _CATEGORICAL, _NUMERIC = FeatureKind.TEXT, FeatureKind.CATEGORICAL, FeatureKind.NUMERIC
_DATE, _MULTI = FeatureKind.DATE, FeatureKind.MULTI

_ML100K_ITEM_FEATURES = {"title": _TEXT, "release_date": _DATE, "genres": _MULTI}
_ML100K_USER_FEATURES = {"age": _NUMERIC, "gender": _CATEGORICAL, "occupation": _CATEGORICAL,
                         "zip": _CATEGORICAL}
_ML_LATEST_ITEM_FEATURES = {"title": _TEXT, "year": _NUMERIC, "genres": _MULTI}
_LASTFM_ITEM_FEATURES = {"name": _TEXT}
_AMAZON_ITEM_FEATURES = {"title": _TEXT, "brand": _CATEGORICAL, "description": _TEXT,
                         "price": _NUMERIC, "also_buy": _MULTI, "also_view": _MULTI,
                         "category": _MULTI}

#: Last.fm artists keep at most this many tags, the most used first.
LASTFM_MAX_TAGS = 20

_YEAR_AT_END = r"\((\d{4})(?:[–-]\d{4})?\)\s*$"  # "(1995)", or "(2006–2007)" for a series
_PRICE = r"^\$\s*(\d[\d,]*(?:\.\d+)?)$"  # "$25.00", "$1,000.00"


# --- files -----------------------------------------------------------------------------------


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError("dataset folder not found; pass the folder holding the dataset's files "
                        "with --path", file=str(folder))
    return folder


def _file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DataError(f"file not found; is {folder} the right dataset folder?", file=str(path))
    return path


def _read_csv(
    path: Path,
    *,
    sep: str = ",",
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> RawTable:
    """Split a known-clean delimited file into strings with pandas, keeping line numbers.

    ``names`` is for files without a header line. A record with too many fields is a
    ``DataError`` naming its line; pandas pads one with too few with empty strings, which
    validation then sees as absent values, so use this only where the files are known to be clean.
    """
    try:
        frame = pd.read_csv(path, sep=sep, header=None if names else 0, names=names,
                            index_col=False, dtype=str, keep_default_na=False,
                            encoding=encoding, quoting=quoting)
    except UnicodeDecodeError as exc:
        raise DataError(f"not {encoding} text ({exc.reason})", file=str(path)) from None
    except pd.errors.ParserError as exc:
        line = re.search(r"line (\d+)", str(exc))
        detail = re.sub(r"^.*C error: ", "", str(exc)).strip()
        raise DataError(f"cannot split the record ({detail})",
                        file=str(path), row=int(line.group(1)) if line else None) from None
    except (pd.errors.EmptyDataError, OSError) as exc:
        raise DataError(f"cannot read the file: {exc}", file=str(path)) from None
    rows = np.arange(1, len(frame) + 1, dtype=np.int64) + (0 if names else 1)
    return RawTable(str(path), frame, rows, [])


def _with_columns(table: RawTable, **columns: pd.Series | list[str]) -> RawTable:
    """The table with derived string columns added (same rows, so row numbers still hold)."""
    return dataclasses.replace(table, frame=table.frame.assign(**columns))


# --- validation ------------------------------------------------------------------------------


def _events(table: RawTable, schema: EventSchema, *, user: str, item: str, value: str,
            timestamp: str | None, event_type: str = "rating",
            ) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate a table of one event type, its fields in the columns named."""
    mapping = ColumnMapping(user_id=user, item_id=item, event_type=None, value=value,
                            timestamp=timestamp, default_event_type=event_type)
    return validate_events(table, mapping, schema)


def _metadata(table: RawTable, id_column: str, kinds: Mapping[str, FeatureKind], index_name: str,
              *, list_separator: str = "|") -> tuple[pd.DataFrame, ValidationReport]:
    frame, report = validate_metadata(table, id_column, kinds, list_separator=list_separator)
    frame.index.name = index_name
    return frame, report


def _merge(*reports: ValidationReport) -> ValidationReport:
    return reduce(ValidationReport.merge, reports)


def _users_seen(events: pd.DataFrame) -> pd.DataFrame:
    """A user table without features, for datasets that publish none: the ids in the events."""
    return pd.DataFrame(index=pd.Index(sorted(events["user_id"].unique()), name="user_id"))


# --- feature helpers -------------------------------------------------------------------------


def _labels_by_use(owners: pd.Series, labels: pd.Series, index: pd.Index,
                   limit: int | None = None) -> pd.Series:
    """Per id in ``index``, its distinct labels, the most often applied first (ties by name).

    ``owners`` and ``labels`` are parallel: one row per time a label was applied to an owner.
    Ids with no labels get an empty list.
    """
    pairs = pd.DataFrame({"owner": owners.astype(object), "label": labels.astype(object)})
    counts = (pairs[pairs["label"] != ""].groupby(["owner", "label"]).size()
              .reset_index(name="uses")
              .sort_values(["owner", "uses", "label"], ascending=[True, False, True]))
    if limit is not None:
        counts = counts.groupby("owner", sort=False).head(limit)
    lists = counts.groupby("owner", sort=False)["label"].agg(list).reindex(index)
    return lists.map(lambda v: v if isinstance(v, list) else [])


def _iso_dates(text: pd.Series, fmt: str) -> pd.Series:
    """Dates in ``fmt`` rewritten as ISO 8601 for validation; others are left to be reported."""
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    return parsed.dt.strftime("%Y-%m-%d").where(parsed.notna(), text)


def _joined(column: pd.Series, separator: str) -> pd.Series:
    return column.map(lambda text: separator.join(parse_labels(text, _LIST_SEP)))


def _distinct(lists: pd.Series) -> pd.Series:
    return lists.map(lambda values: list(dict.fromkeys(values)))


def _columns(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """The named columns, each present (as empty strings when no record had the field)."""
    return frame.reindex(columns=list(names), fill_value="")


# --- MovieLens 100K --------------------------------------------------------------------------


def load_movielens_100k(path: str | Path) -> tuple[Dataset, ValidationReport]:
    """MovieLens 100K (GroupLens, 1998): 100,000 ratings of 1,682 movies by 943 users.

    - ``u.data`` (tab-separated user, item, rating, unix time; no header) gives events of type
      ``rating``: the stars are stated preferences, so the feedback is explicit, on a 1-5 scale.
    - ``u.item`` (Latin-1, ``|``-separated) gives items: ``title`` (text), ``release_date`` (date,
      from "01-Jan-1995"; NaT where empty) and ``genres`` (multi), the names of the 19 genre flags
      in the order of ``u.genre``. The flag "unknown" is left out: it marks a movie with no genre
      (like latest-small's "(no genres listed)"), and as a label it would tie unrelated movies.
    - ``u.user`` (``|``-separated) gives users: ``age`` (numeric), ``gender``, ``occupation`` and
      ``zip`` (categorical; zip codes are labels, and some are Canadian).
    """
    folder = _folder(path)
    table = _read_csv(_file(folder, "u.data"), sep="\t",
                      names=["user", "item", "rating", "timestamp"])
    schema = EventSchema().with_rating_range(1, 5)
    events, report = _events(table, schema, user="user", item="item", value="rating",
                             timestamp="timestamp")
    items, items_report = _ml100k_items(folder)
    users, users_report = _metadata(
        _read_csv(_file(folder, "u.user"), sep="|", names=["id", *_ML100K_USER_FEATURES]),
        "id", _ML100K_USER_FEATURES, "user_id")
    dataset = Dataset("movielens-100k", events, items, users, dict(_ML100K_ITEM_FEATURES),
                      dict(_ML100K_USER_FEATURES), schema)
    return dataset, _merge(report, items_report, users_report)


def _ml100k_items(folder: Path) -> tuple[pd.DataFrame, ValidationReport]:
    genres = _ml100k_genres(_file(folder, "u.genre"))
    names = ["id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    table = _read_csv(_file(folder, "u.item"), sep="|", names=names, encoding="latin-1",
                      quoting=csv.QUOTE_NONE)
    flags = table.frame[genres].to_numpy() == "1"
    labels = [genre if genre != "unknown" else "" for genre in genres]
    table = _with_columns(
        table,
        release_date=_iso_dates(table.frame["release_date"], "%d-%b-%Y"),
        genres=["|".join(g for g, on in zip(labels, row, strict=True) if on) for row in flags],
    )
    return _metadata(table, "id", _ML100K_ITEM_FEATURES, "item_id")


def _ml100k_genres(path: Path) -> list[str]:
    """Genre names in flag order; ``u.genre`` lists ``name|position``."""
    frame = _read_csv(path, sep="|", names=["genre", "position"]).frame
    position = pd.to_numeric(frame["position"], errors="coerce")
    if position.isna().any():
        raise DataError("expected lines of genre|position", file=str(path))
    return frame["genre"].str.strip().iloc[np.argsort(position.to_numpy())].tolist()


# --- MovieLens latest-small ------------------------------------------------------------------


def load_movielens_latest_small(path: str | Path) -> tuple[Dataset, ValidationReport]:
    """MovieLens latest-small (GroupLens, 2018): 100,836 ratings by 610 users, 9,742 movies.

    - ``ratings.csv`` (userId, movieId, rating, timestamp) gives events of type ``rating``:
      explicit, in half stars from 0.5 to 5.
    - ``movies.csv`` (movieId, title, genres) gives the whole catalogue, rated or not: ``title``
      (text, as published, year included), ``year`` (numeric, from a trailing "(1995)"; NaN for
      the few titles without one) and ``genres`` (multi, ``|``-separated; "(no genres listed)"
      is no genres).
    - ``tags.csv`` gives ``tags`` (multi): the distinct tags users put on each movie, lower-cased
      and stripped, the most used first; an empty list for the many movies nobody tagged. Tags are
      content, not feedback: only 58 users tagged anything.

    There are no user features; ``users`` lists the ids that rated.
    """
    folder = _folder(path)
    table = _read_csv(_file(folder, "ratings.csv"))
    schema = EventSchema().with_rating_range(0.5, 5)
    events, report = _events(table, schema, user="userId", item="movieId", value="rating",
                             timestamp="timestamp")
    movies = _read_csv(_file(folder, "movies.csv"))
    genres = movies.frame["genres"].str.strip()
    movies = _with_columns(
        movies,
        year=movies.frame["title"].str.extract(_YEAR_AT_END, expand=False).fillna(""),
        genres=genres.where(genres != "(no genres listed)", ""),
    )
    items, items_report = _metadata(movies, "movieId", _ML_LATEST_ITEM_FEATURES, "item_id")
    tags = _read_csv(_file(folder, "tags.csv")).frame
    items["tags"] = _labels_by_use(tags["movieId"].str.strip(),
                                   tags["tag"].str.strip().str.lower(), items.index)
    dataset = Dataset("movielens-latest-small", events, items, _users_seen(events),
                      {**_ML_LATEST_ITEM_FEATURES, "tags": _MULTI}, {}, schema)
    return dataset, _merge(report, items_report)


# --- Last.fm 2K ------------------------------------------------------------------------------


def load_lastfm_2k(path: str | Path) -> tuple[Dataset, ValidationReport]:
    """HetRec 2011 Last.fm 2K: play counts of 1,892 users for 17,632 artists.

    - ``user_artists.dat`` (userID, artistID, weight) gives events of type ``play`` whose value is
      the play count. Listening is implicit feedback: a count shows interest but never dislike, and
      it is heavy-tailed (1 to 352,698), which the ``play`` type's ``log1p`` transform tames. The
      file has no times, so timestamps are NaT and time-based splits do not apply.
    - ``artists.dat`` (id, name, url, pictureURL) gives ``name`` (text). Names contain stray
      quotes (``"Weird Al" Yankovic``), so the file is split on tabs with quoting off.
    - ``tags.dat`` (Latin-1: tagID, tagValue) and ``user_taggedartists.dat`` (userID, artistID,
      tagID, day, month, year) give ``tags`` (multi): an artist's tag names, the most applied first,
      at most :data:`LASTFM_MAX_TAGS`; an empty list for the third of artists nobody tagged.

    There are no user features (the friend graph in ``user_friends.dat`` is not read); ``users``
    lists the ids that played.
    """
    folder = _folder(path)
    schema = EventSchema()
    table = _read_csv(_file(folder, "user_artists.dat"), sep="\t")
    events, report = _events(table, schema, user="userID", item="artistID", value="weight",
                             timestamp=None, event_type="play")
    artists = _read_csv(_file(folder, "artists.dat"), sep="\t", quoting=csv.QUOTE_NONE)
    items, items_report = _metadata(artists, "id", _LASTFM_ITEM_FEATURES, "item_id")
    items["tags"] = _lastfm_tags(folder, items.index)
    dataset = Dataset("lastfm-2k", events, items, _users_seen(events),
                      {**_LASTFM_ITEM_FEATURES, "tags": _MULTI}, {}, schema)
    return dataset, _merge(report, items_report)


def _lastfm_tags(folder: Path, artists: pd.Index) -> pd.Series:
    tags = _read_csv(_file(folder, "tags.dat"), sep="\t", encoding="latin-1",
                     quoting=csv.QUOTE_NONE).frame
    names = dict(zip(tags["tagID"].str.strip(), tags["tagValue"].str.strip(), strict=True))
    tagged = _read_csv(_file(folder, "user_taggedartists.dat"), sep="\t").frame
    labels = tagged["tagID"].str.strip().map(names).fillna("")
    return _labels_by_use(tagged["artistID"].str.strip(), labels, artists, LASTFM_MAX_TAGS)


# --- Amazon Gift Cards -----------------------------------------------------------------------


def load_amazon_gift_cards(path: str | Path) -> tuple[Dataset, ValidationReport]:
    """Amazon Review Data 2018, Gift Cards (Ni et al. 2019): 5-core reviews and product metadata.

    - ``Gift_Cards_5.json.gz`` (one review per line) gives events of type ``rating``: ``overall``
      (1-5 stars, explicit) at ``unixReviewTime`` (a day), by ``reviewerID`` on ``asin``. Nearly
      all are 5 stars, so models often treat a review as an implicit purchase instead. A second
      review of the same item by the same user on the same day counts as a duplicate and is
      skipped, as the report says (the stars always agree).
    - ``meta_Gift_Cards.json.gz`` gives the whole catalogue, reviewed or not, indexed by ``asin``:
      ``title`` (text), ``brand`` (categorical), ``description`` (text: its paragraphs joined
      with spaces; raw, HTML included), ``price`` (numeric, from "$25.00"; NaN when empty or
      when the field holds page debris), ``also_buy`` / ``also_view`` (multi: asins) and
      ``category`` (multi, repeats removed). A repeated asin keeps its first record.

    There are no user features; ``users`` lists the ids that reviewed.
    """
    folder = _folder(path)
    schema = EventSchema()
    reviews = read_table(_file(folder, "Gift_Cards_5.json.gz"), "jsonl")
    events, report = _events(reviews, schema, user="reviewerID", item="asin",
                             value="overall", timestamp="unixReviewTime")
    items, items_report = _amazon_items(_file(folder, "meta_Gift_Cards.json.gz"))
    dataset = Dataset("amazon-gift-cards", events, items, _users_seen(events),
                      dict(_AMAZON_ITEM_FEATURES), {}, schema)
    return dataset, _merge(report, items_report)


def _amazon_items(path: Path) -> tuple[pd.DataFrame, ValidationReport]:
    table = read_table(path, "jsonl")
    frame = _columns(table.frame, ["asin", *_AMAZON_ITEM_FEATURES])
    lists = ["also_buy", "also_view", "category"]
    price = frame["price"].str.strip().str.extract(_PRICE, expand=False)
    frame = frame.assign(
        description=_joined(frame["description"], " "),
        price=price.str.replace(",", "", regex=False).fillna(""),
        **{name: _joined(frame[name], _LIST_SEP) for name in lists},
    )
    table = dataclasses.replace(table, frame=frame)
    items, report = _metadata(table, "asin", _AMAZON_ITEM_FEATURES, "item_id",
                              list_separator=_LIST_SEP)
    items[lists] = items[lists].apply(_distinct)
    # repeated asins are reported by validation, which keeps the first; that is all we want
    return items, report


# --- registry --------------------------------------------------------------------------------

#: Loaders by the name the command line uses.
DATASETS: dict[str, Loader] = {
    "movielens-100k": load_movielens_100k,
    "movielens-latest-small": load_movielens_latest_small,
    "lastfm-2k": load_lastfm_2k,
    "amazon-gift-cards": load_amazon_gift_cards,
}


def load_dataset(name: str, path: str | Path | None = None, *,
                 seed: int = 0) -> tuple[Dataset, ValidationReport]:
    """Load a dataset by name: one of :data:`DATASETS` from the folder ``path``, or ``synthetic``.

    ``synthetic`` is generated from ``seed`` and needs no folder (``path`` is ignored); every
    other dataset needs one.

    Examples
    --------
    >>> load_dataset("movielens-1m")
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: unknown dataset 'movielens-1m'; known: movielens-100k, \
movielens-latest-small, lastfm-2k, amazon-gift-cards, synthetic
    >>> load_dataset("lastfm-2k")
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: dataset 'lastfm-2k' needs --path: the folder holding its files
    """
    if name == SYNTHETIC:
        from recengine.data.synthetic import generate  # written separately; import only if used

        dataset = generate(seed=seed)
        n = len(dataset.events)
        return dataset, ValidationReport(file=SYNTHETIC, rows_read=n, rows_accepted=n)
    loader = DATASETS.get(name)
    if loader is None:
        known = ", ".join([*DATASETS, SYNTHETIC])
        raise DataError(f"unknown dataset {name!r}; known: {known}")
    if path is None:
        raise DataError(f"dataset {name!r} needs --path: the folder holding its files")
    return loader(path)

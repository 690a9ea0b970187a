"""The one interface every recommender implements, and what they share.

A model implements three private methods: ``_fit`` (learn from :class:`TrainingData`),
``_score`` (a dense score row per user, for known users or users known only by a history), and
optionally ``_similar`` and ``_explain``. Everything else is written once here: id mapping,
seen-item exclusion, item filters, top-k, batching, pair scores, and saving without pickle. So the
evaluator, the hybrid and the server treat every model alike.

Index-level methods (``recommend_indices``) serve the evaluator; id-level methods (``recommend``,
``recommend_history``, ``similar_items``, ``score``, ``explain``) serve people and the API.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.data.vocabulary import Missing, Vocabulary
from recengine.errors import DataError, ModelNotFoundError, NotFittedError, NotSupportedError
from recengine.models import kernels
from recengine.models.retrieval import ItemIndex
from recengine.progress import ProgressCallback

__all__ = ["ModelConfig", "Recommender", "check_fitted", "normalise_scores", "top_k"]

#: Rewrites a block of score rows ``[batch, n_items]`` (e.g. business rules).
ScoreTransform = Callable[[np.ndarray], np.ndarray]

#: Below this many rows, top-k runs on one thread: waking a thread pool costs milliseconds.
SERIAL_ROWS = 8

#: Users scored per block: bounds memory at ``batch × n_items`` floats.
DEFAULT_BATCH = 1024
FORMAT_VERSION = 1
#: A saved model's HNSW graphs, when it has them: for top-k, and for similar items.
INDEX_FILE = "index.faiss"
SIMILAR_INDEX_FILE = "similar.faiss"


class ModelConfig(BaseModel):
    """Base of every model's configuration: validated, frozen, JSON round-trippable."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def check_fitted(model: Recommender) -> None:
    """Raise :class:`NotFittedError` unless ``fit`` has run."""
    if not hasattr(model, "items_"):
        raise NotFittedError(f"{type(model).__name__} is not fitted yet: call fit(data) first")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest finite scores per row, best first.

    ``-inf`` and NaN never rank; rows with fewer than ``k`` of them are padded with index -1 and
    score NaN. Ties go to the lower index, so results are deterministic.

    >>> top_k(np.array([[0.5, 2.0, -np.inf, 2.0]], dtype=np.float32), 3)[0].tolist()
    [[1, 3, 0]]
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    idx = np.empty((scores.shape[0], k), dtype=np.int32)
    val = np.empty((scores.shape[0], k), dtype=np.float32)
    select = kernels.select_top_k if scores.shape[0] >= SERIAL_ROWS else (
        kernels.select_top_k_serial)
    select(scores, k, idx, val)
    return idx, val


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Each row's finite scores min-max scaled to [0, 1]; everything else becomes -inf.

    Rules and constraints reweight scores of models whose scales differ (cosines, counts,
    dot products); on [0, 1] a boost factor or a preference bonus means the same for all.

    >>> normalise_scores(np.array([[2.0, 4.0, -np.inf]])).tolist()
    [[0.0, 1.0, -inf]]
    """
    finite = np.isfinite(scores)
    safe = np.where(finite, scores, 0.0)
    low = np.where(finite, safe, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, safe, -np.inf).max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(finite, (safe - low) / span, -np.inf)


class Recommender(ABC):
    """Base of all recommenders.

    Subclasses set ``name`` (the command line's name), ``Config`` (a :class:`ModelConfig`) and
    ``state`` (the learned attributes, ending in ``_``, that :meth:`save` writes). ``__init__``
    only stores the configuration; all work happens in :meth:`fit`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]
    state: ClassVar[tuple[str, ...]] = ()
    #: Whether ``score`` predicts ratings on the data's scale (so RMSE and MAE apply).
    predicts_ratings: ClassVar[bool] = False
    #: Whether a user unknown to the model needs some history to be scored (personalised
    #: models); popularity-like models answer for anyone.
    needs_history: ClassVar[bool] = False

    users_: Vocabulary
    items_: Vocabulary
    user_items_: sp.csr_array
    #: Approximate top-k and similar-items indexes (:meth:`build_index`); saved with the
    #: model, dropped by :meth:`fit`.
    retrieval_: ItemIndex | None = None
    similar_index_: ItemIndex | None = None

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        try:
            self.config = config if config is not None else self.Config(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise DataError(f"invalid {self.name} parameter: {first['msg']}",
                            column=field) from None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # -- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> Self:
        """Learn from ``data``; a second call replaces the first. Returns ``self``.

        Long fits call ``progress(description, done, total)`` as they go.
        """
        if data.n_users == 0 or data.feedback.nnz == 0:
            raise DataError("no training interactions")
        self.users_ = data.users
        self.items_ = data.items
        self.user_items_ = data.feedback
        self.retrieval_ = self.similar_index_ = None
        self._fit(data, progress)
        return self

    @abstractmethod
    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None: ...

    @abstractmethod
    def _score(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        """Scores ``[len(users), n_items]`` (higher is better; -inf never recommended).

        ``users`` holds training indices, or -1 for a user known only by ``history``, whose row
        ``k`` is user ``k``'s interactions (for known users, their training row).
        """

    def _embed(self, users: np.ndarray,
               history: sp.csr_array | None) -> tuple[np.ndarray, np.ndarray]:
        """``_score`` as inner products: query vectors ``q`` and offsets ``c`` per user, with
        ``_score(users, history)[u] == q[u] @ self._item_vectors().T + c[u]``. ``history`` may
        be None when every user is known.

        Factor models implement it (and :meth:`_item_vectors`) so that :meth:`build_index` can
        answer top-k approximately.
        """
        raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")

    def _item_vectors(self) -> np.ndarray:
        """The item side of :meth:`_embed`, ``[n_items, dim]``."""
        raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")

    def _similar_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """Vectors whose inner products are :meth:`_similar`'s similarities, for ``items``
        (all when None): ``_similar(i) == v(i) @ v(all).T``."""
        raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Similarity ``[len(items), n_items]`` of each item to every item."""
        raise NotSupportedError(f"{self.name} cannot find similar items")

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Scores ``[len(items), n_users]`` of every training user for each item.

        Generic: scores users in blocks and keeps the items' columns; factor models override it
        with one product.
        """
        n_users = len(self.users_)
        out = np.empty((len(items), n_users), dtype=np.float32)
        for start in range(0, n_users, DEFAULT_BATCH):
            block = np.arange(start, min(start + DEFAULT_BATCH, n_users))
            out[:, block] = np.asarray(self._score(block, self.user_items_[block]))[:, items].T
        return out

    def _explain(self, user: int, history: sp.csr_array, items: np.ndarray) -> list[str]:
        """One reason per recommended item, in words."""
        return [f"scored by {self.name}"] * len(items)

    # -- index level --------------------------------------------------------------------------
    def _check_history(self, users: np.ndarray, history: sp.csr_array | None) -> None:
        if history is not None:
            if history.shape != (len(users), len(self.items_)):
                raise DataError(f"history must be {len(users)} × {len(self.items_)}, "
                                f"got {history.shape[0]} × {history.shape[1]}")
        elif (users < 0).any():
            raise DataError("users given as -1 need a history")

    def _history_rows(self, users: np.ndarray, history: sp.csr_array | None) -> sp.csr_array:
        self._check_history(users, history)
        return sp.csr_array(history) if history is not None else self.user_items_[users]

    def recommend_indices(
        self,
        users: np.ndarray,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        history: sp.csr_array | None = None,
        transform: ScoreTransform | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for each user index, best first.

        ``candidates`` (item indices) restricts the answer to those items; ``history`` gives the
        users' interactions when they were not in training (pass -1 as their index) and is then
        also what ``exclude_seen`` excludes. ``transform(scores)`` rewrites each block of score
        rows before the top-k (business rules, constraints). Short lists are padded with -1 and
        NaN.
        """
        check_fitted(self)
        users = np.asarray(users, dtype=np.int32)
        if self.retrieval_ is not None and candidates is None and transform is None:
            self._check_history(users, history)
            return self._recommend_approximate(users, history, n, exclude_seen)
        rows = self._history_rows(users, history)
        return self._recommend_exact(users, rows, n, exclude_seen, candidates, transform,
                                     batch_size)

    def _recommend_exact(self, users: np.ndarray, rows: sp.csr_array, n: int,
                         exclude_seen: bool, candidates: np.ndarray | None,
                         transform: ScoreTransform | None,
                         batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
        allowed = None
        if candidates is not None:
            allowed = np.zeros(len(self.items_), dtype=bool)
            allowed[np.asarray(candidates, dtype=np.int64)] = True
        out_idx = np.empty((len(users), n), dtype=np.int32)
        out_val = np.empty((len(users), n), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            stop = min(start + batch_size, len(users))
            block = rows[start:stop]
            scores = np.array(self._score(users[start:stop], block), dtype=np.float32)
            if transform is not None:
                scores = transform(scores)
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            if exclude_seen:
                r = np.repeat(np.arange(stop - start), np.diff(block.indptr))
                scores[r, block.indices] = -np.inf
            out_idx[start:stop], out_val[start:stop] = top_k(scores, n)
        return out_idx, out_val

    def build_index(self, *, neighbours: int = 16, ef_construction: int = 80,
                    ef_search: int = 64) -> Self:
        """Answer plain top-k (no candidates, no transform) and similar items from HNSW
        indexes from now on.

        Approximate: see :mod:`recengine.models.retrieval` for the trade-off and the
        parameters. Only models with a vector form (:meth:`_embed`, :meth:`_similar_vectors`)
        support it; a model with one of the two gets that index only.
        """
        check_fitted(self)
        options = {"neighbours": neighbours, "ef_construction": ef_construction,
                   "ef_search": ef_search}
        built = []
        for name, vectors in (("retrieval_", self._item_vectors),
                              ("similar_index_", self._similar_vectors)):
            with contextlib.suppress(NotSupportedError):
                setattr(self, name, ItemIndex.build(vectors(), **options))
                built.append(name)
        if not built:
            raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")
        return self

    @property
    def indexes(self) -> tuple[ItemIndex, ...]:
        """The HNSW indexes this model answers from (:meth:`build_index`)."""
        return tuple(i for i in (self.retrieval_, self.similar_index_) if i is not None)

    def drop_indexes(self) -> None:
        """Answer exactly from now on."""
        self.retrieval_ = self.similar_index_ = None

    def _recommend_approximate(self, users: np.ndarray, history: sp.csr_array | None, n: int,
                               exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-n from :attr:`retrieval_`; rows it leaves short are answered exactly.

        Known users are looked up without slicing the training matrix: a scipy row slice costs
        more than the graph search.
        """
        assert self.retrieval_ is not None
        source, rows = ((self.user_items_, users) if history is None
                        else (sp.csr_array(history), np.arange(len(users))))
        seen = [source.indices[source.indptr[r]:source.indptr[r + 1]] for r in rows.tolist()]
        queries, offsets = self._embed(users, history)
        idx, val, short = self.retrieval_.search(queries, n, seen if exclude_seen else None)
        val += offsets[:, None].astype(np.float32)
        if short.any():
            which = np.flatnonzero(short)
            exact_rows = source[rows[which]]
            idx[which], val[which] = self._recommend_exact(users[which], exact_rows, n,
                                                           exclude_seen, None, None)
        return idx, val

    # -- id level -----------------------------------------------------------------------------
    def recommend(
        self,
        users: str | Sequence[str],
        n: int = 10,
        *,
        exclude_seen: bool = True,
        items: Sequence[str] | None = None,
        missing: Missing = "error",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item ids and scores for one user (1-D arrays) or a batch (2-D, padded None).

        ``items`` restricts the answer to those item ids. Unknown users raise
        :class:`~recengine.errors.UnknownIdError`; with ``missing="negative"`` they get an empty
        (all-None) row instead.

        Examples
        --------
        >>> from recengine.models import Popularity
        >>> from recengine.data.training_data import TrainingData, csr_from_pairs
        >>> import pandas as pd
        >>> pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"],
        ...                       "item_id": ["a", "b", "a", "c"],
        ...                       "rating": float("nan"), "feedback": 1.0})
        >>> model = Popularity().fit(TrainingData.from_interactions(pairs))
        >>> ids, scores = model.recommend("u3", n=2)
        >>> ids.tolist(), scores.tolist()
        (['a', 'b'], [2.0, 1.0])
        """
        check_fitted(self)
        scalar = isinstance(users, str)
        idx = self.users_.index([users] if scalar else users, missing=missing)
        known = idx >= 0
        out_idx = np.full((len(idx), n), -1, dtype=np.int32)
        out_val = np.full((len(idx), n), np.nan, dtype=np.float32)
        cands = None if items is None else self.items_.index(items, missing="negative")
        if known.any():
            out_idx[known], out_val[known] = self.recommend_indices(
                idx[known], n, exclude_seen=exclude_seen,
                candidates=None if cands is None else cands[cands >= 0])
        ids = self.items_.id_of(out_idx)
        return (ids[0], out_val[0]) if scalar else (ids, out_val)

    def recommend_history(
        self,
        history: Sequence[str] | Mapping[str, float],
        n: int = 10,
        *,
        exclude_seen: bool = True,
        items: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` for a user known only by their items (ids, or id → feedback): fold-in.

        Unknown item ids in the history are ignored.
        """
        row = self.history_row(history)
        cands = None if items is None else self.items_.index(items, missing="negative")
        idx, val = self.recommend_indices(
            np.array([-1]), n, exclude_seen=exclude_seen, history=row,
            candidates=None if cands is None else cands[cands >= 0])
        return self.items_.id_of(idx[0]), val[0]

    def history_row(self, history: Sequence[str] | Mapping[str, float]) -> sp.csr_array:
        """A one-row matrix over the model's items from item ids or an id → feedback map."""
        check_fitted(self)
        weights = dict(history) if isinstance(history, Mapping) else dict.fromkeys(history, 1.0)
        idx = self.items_.index(list(weights), missing="negative")
        values = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        keep = idx >= 0
        return csr_from_pairs(np.zeros(int(keep.sum()), dtype=np.int64), idx[keep], values[keep],
                              (1, len(self.items_)))

    def similar_items(self, items: str | Sequence[str], n: int = 10) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """The ``n`` items most similar to each item (the item itself excluded)."""
        check_fitted(self)
        scalar = isinstance(items, str)
        idx = self.items_.index([items] if scalar else items)
        top, val = (self._similar_exact(idx, n) if self.similar_index_ is None
                    else self._similar_approximate(idx, n))
        ids = self.items_.id_of(top)
        return (ids[0], val[0]) if scalar else (ids, val)

    def _similar_exact(self, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        sims = np.array(self._similar(idx), dtype=np.float32)
        sims[np.arange(len(idx)), idx] = -np.inf
        return top_k(sims, n)

    def _similar_approximate(self, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """From :attr:`similar_index_`, each item left out of its own list; rows the graph
        leaves short are answered exactly."""
        assert self.similar_index_ is not None
        top, val, short = self.similar_index_.search(
            self._similar_vectors(idx), n, [np.array([i]) for i in idx.tolist()])
        if short.any():
            which = np.flatnonzero(short)
            top[which], val[which] = self._similar_exact(idx[which], n)
        return top, val

    def audience(self, items: str | Sequence[str], n: int = 100, *, exclude_seen: bool = True,
                 combine: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Targeting: the ``n`` users most likely to engage with each item, best first.

        With ``combine=True`` the items are one promotion: users are ranked by their mean score
        over the items. ``exclude_seen`` leaves out users who already chose the item (any of
        them, when combined).
        """
        check_fitted(self)
        scalar = isinstance(items, str)
        idx = self.items_.index([items] if scalar else items)
        scores = np.array(self._item_scores(idx), dtype=np.float32)
        if exclude_seen:
            seen = self.user_items_[:, idx].T.tocsr()
            seen_rows = np.repeat(np.arange(len(idx)), np.diff(seen.indptr))
            scores[seen_rows, seen.indices] = -np.inf
        if combine:
            scores = scores.mean(axis=0, keepdims=True)
        top, val = top_k(scores, n)
        ids = self.users_.id_of(top)
        return (ids[0], val[0]) if scalar or combine else (ids, val)

    def score(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Score of each (user, item) pair; NaN where the user or the item is unknown."""
        check_fitted(self)
        u = self.users_.index(users, missing="negative")
        i = self.items_.index(items, missing="negative")
        return self.score_indices(u, i)

    def score_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Pair scores by index (-1 gives NaN), scoring each distinct user once."""
        out = np.full(len(users), np.nan, dtype=np.float32)
        ok = (users >= 0) & (items >= 0)
        distinct, inverse = np.unique(users[ok], return_inverse=True)
        for start in range(0, len(distinct), DEFAULT_BATCH):
            block = distinct[start:start + DEFAULT_BATCH]
            scores = self._score(block, self.user_items_[block])
            pick = (inverse >= start) & (inverse < start + len(block))
            where = np.flatnonzero(ok)[pick]
            out[where] = scores[inverse[pick] - start, items[where]]
        return out

    def explain(self, user: str, items: Sequence[str]) -> list[str]:
        """A reason in words for each of ``items`` recommended to ``user``."""
        check_fitted(self)
        u = int(self.users_.index([user])[0])
        return self._explain(u, self.user_items_[[u]], self.items_.index(items))

    def explain_history(self, history: Sequence[str] | Mapping[str, float],
                        items: Sequence[str]) -> list[str]:
        """A reason for each of ``items`` recommended to a user known only by ``history``."""
        return self._explain(-1, self.history_row(history), self.items_.index(items))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (name, config), ``state.npz`` (vocabularies, arrays) and, when
        the model has them, its HNSW graphs ``index.faiss`` and ``similar.faiss``."""
        check_fitted(self)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "format": FORMAT_VERSION,
                "config": self.config.model_dump(mode="json")}
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        m = self.user_items_
        arrays = {"users_": self.users_.to_array(), "items_": self.items_.to_array(),
                  "user_items_data": m.data, "user_items_indices": m.indices,
                  "user_items_indptr": m.indptr}
        arrays |= {name: np.asarray(getattr(self, name)) for name in self.state}
        np.savez(path / "state.npz", **arrays)
        for index, name in ((self.retrieval_, INDEX_FILE),
                            (self.similar_index_, SIMILAR_INDEX_FILE)):
            if index is not None:
                index.write(path / name)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Read a model written by :meth:`save`; never runs code from the file (no pickle)."""
        from recengine.models.registry import model_class

        path = Path(path)
        try:
            meta = json.loads((path / "model.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelNotFoundError(f"no saved model at {path} ({exc})") from None
        klass = model_class(meta["model"])
        model = klass(klass.Config.model_validate(meta["config"]))
        with np.load(path / "state.npz", allow_pickle=False) as z:
            model.users_ = Vocabulary.from_array(z["users_"], name="user")
            model.items_ = Vocabulary.from_array(z["items_"], name="item")
            model.user_items_ = sp.csr_array(
                (z["user_items_data"], z["user_items_indices"], z["user_items_indptr"]),
                shape=(len(model.users_), len(model.items_)))
            for name in klass.state:
                setattr(model, name, z[name])
        if (path / INDEX_FILE).exists():
            model.retrieval_ = ItemIndex.read(path / INDEX_FILE)
        if (path / SIMILAR_INDEX_FILE).exists():
            model.similar_index_ = ItemIndex.read(path / SIMILAR_INDEX_FILE)
        return model

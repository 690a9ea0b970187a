"""The one interface every recommender implements, and what they share.

A model implements ``_train`` (learn from :class:`TrainingData`, *return* the learned state) and
``_score`` (a dense score row per query, see :class:`~recengine.data.query.Queries`), and
declares what else it can do in ``capabilities``: similar items (``_similar``), similar users,
user vectors (fold-in), vector forms for approximate retrieval, rating prediction, use of order
or of request-time user features. Everything else is written once here: id mapping, seen-item
exclusion, item filters, top-k, batching, pair scores, the fit lifecycle and saving without
pickle. So the evaluator, the hybrid and the server treat every model alike.

The fit lifecycle: :meth:`Recommender.fit` validates, calls ``_train`` (which must not touch
``self``: it returns a dict of learned attributes), and only then installs the whole state at
once. A failed fit leaves the previous model as it was. Histories are not learned state: a
fitted model reads training users' histories from the :class:`TrainingData` it was fitted on
(or, after :meth:`Recommender.load`, from the history source it is given), never from a matrix
of its own.

Index-level methods (``recommend_queries``, ``recommend_indices``, ``explain_indices``,
``similarity``) serve the evaluator and composition (rules, fallback chains, hybrids); id-level
methods (``recommend``, ``recommend_history``, ``recommend_query``, ``similar_items``,
``audience``, ``score``, ``explain``) serve people and the API.
"""

from __future__ import annotations

import json
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from recengine.data.query import Event, HistorySource, Queries, Query, Sequences, seconds_of
from recengine.data.training_data import TrainingData, check_csr, csr_from_pairs
from recengine.data.vocabulary import Missing, Vocabulary
from recengine.errors import (
    DataError,
    ModelLoadError,
    ModelNotFoundError,
    NotFittedError,
    NotSupportedError,
    RecengineError,
)
from recengine.models import kernels
from recengine.models.retrieval import ItemIndex
from recengine.progress import ProgressCallback

__all__ = ["Capability", "ModelConfig", "Recommender", "Shape", "TrainingOptions", "check_fitted",
           "normalise_scores", "top_k"]

#: Rewrites a block of score rows ``[batch, n_items]`` (e.g. business rules).
ScoreTransform = Callable[[np.ndarray], np.ndarray]

#: Below this many rows, top-k runs on one thread: waking a thread pool costs milliseconds.
SERIAL_ROWS = 8

#: Users scored per block: bounds memory at ``batch × n_items`` floats.
DEFAULT_BATCH = 1024
#: The expected shape of a learned array, one entry per axis: a number; ``"users"`` or
#: ``"items"``, the sizes of the vocabularies; or any other name, a size that every array
#: naming it must share (``"segments"``: as many rows here as labels there).
Shape = tuple[int | str, ...]

#: 2: no training matrix in the model folder (histories come from the caller); 1 had one.
FORMAT_VERSION = 2
#: A saved model's HNSW graphs, when it has them: for top-k, and for similar items.
INDEX_FILE = "index.faiss"
SIMILAR_INDEX_FILE = "similar.faiss"


class ModelConfig(BaseModel):
    """Base of every model's configuration: validated, frozen, JSON round-trippable."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Capability(StrEnum):
    """What a model can do beyond top-k and pair scores, declared on its class."""

    #: ``similar_items`` and MMR re-ranking (``_similar``).
    SIMILAR_ITEMS = "similar-items"
    #: ``similar_users`` (``_similar_users``).
    SIMILAR_USERS = "similar-users"
    #: ``fold_in``: a user's vector from a history (``_user_vectors``).
    USER_VECTORS = "user-vectors"
    #: Approximate top-k from an HNSW graph (``_embed``, ``_item_vectors``).
    RETRIEVAL = "retrieval"
    #: Approximate similar items from an HNSW graph (``_similar_vectors``).
    SIMILAR_RETRIEVAL = "similar-retrieval"
    #: ``predict_ratings`` gives ratings on the data's scale (RMSE and MAE apply).
    RATINGS = "ratings"
    #: Scores depend on the order of the query's events (next-item models).
    ORDER = "order"
    #: Reads the query's request-time user features (new users known by metadata).
    USER_FEATURES = "user-features"
    #: Reads the query's context (the device asking): the same user's answers differ by it,
    #: so a cache of answers keys them apart (and only then: a user switching devices keeps
    #: the cached answers of every model that does not read it).
    CONTEXT = "context"


@dataclass(frozen=True)
class TrainingOptions:
    """How to train, apart from what to learn: device, seed and threads.

    ``seed`` (when set) replaces the configuration's ``random_state``; ``threads`` bounds the
    compiled loops of this fit only (nothing process-wide changes); ``device="cuda"`` needs a
    model that declares it in ``devices`` and a CUDA device.
    """

    device: Literal["cpu", "cuda"] = "cpu"
    seed: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise DataError(f"threads must be at least 1, got {self.threads}", column="threads")

    def seed_or(self, default: int) -> int:
        return default if self.seed is None else self.seed

    @contextmanager
    def thread_limit(self) -> Iterator[None]:
        """Run compiled loops on at most ``threads`` threads, restoring the caller's setting."""
        if self.threads is None:
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]  # numba.config sets it through globals()
        try:
            yield
        finally:
            numba.set_num_threads(before)


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


def _dims(shape: Sequence[object]) -> str:
    return " × ".join(str(n) for n in shape) if len(shape) else "a scalar"


def _check_shapes(shapes: Mapping[str, Shape], arrays: Mapping[str, np.ndarray],
                  sizes: Mapping[str, int]) -> None:
    """Raise :class:`DataError` naming the first array whose shape disagrees with ``shapes``.

    ``sizes`` are the named sizes known up front (the vocabularies'); the first array that
    names another size fixes it for the rest, and a disagreement says where it came from.
    """
    fixed = {name: (size, f"the {name} vocabulary") for name, size in sizes.items()}
    for name, expected in shapes.items():
        if name not in arrays:
            raise DataError(f"the saved state has no array {name!r}")
        actual = np.shape(arrays[name])
        if len(actual) != len(expected):
            raise DataError(f"{name} is {_dims(actual)}, expected {_dims(expected)}")
        for dim, got in zip(expected, actual, strict=True):
            if isinstance(dim, str) and dim not in fixed:
                fixed[dim] = (got, name)
            want, source = fixed[dim] if isinstance(dim, str) else (dim, "")
            if got != want:
                because = f": {dim} is {want}, from {source}" if source else ""
                raise DataError(f"{name} is {_dims(actual)}, expected {_dims(expected)}"
                                f"{because}")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class Recommender(ABC):
    """Base of all recommenders.

    Subclasses set ``name`` (the command line's name), ``Config`` (a :class:`ModelConfig`),
    ``state`` (the learned arrays, ending in ``_``, that ``_train`` returns and :meth:`save`
    writes) and ``capabilities``. ``__init__`` only stores the configuration; all work happens
    in :meth:`fit`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]
    config: ModelConfig
    state: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Devices ``fit`` can train on (``TrainingOptions.device``).
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: Whether a user unknown to the model needs some history to be scored (personalised
    #: models); popularity-like models answer for anyone.
    needs_history: ClassVar[bool] = False
    #: Whether one answer costs milliseconds rather than microseconds (several models and a
    #: network per request): a server computes such answers off its event loop.
    answers_slowly: ClassVar[bool] = False

    users_: Vocabulary
    items_: Vocabulary
    #: Where training users' histories come from: the data of the last fit, or what ``load``
    #: was given. Not saved.
    histories_: HistorySource | None = None
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
                            column=field or None) from None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    @classmethod
    def key(cls) -> str:
        """How registries and manifests name this class: its short name when it is one of
        recengine's own models, else its import path ``package.module:Class``."""
        from recengine.models.registry import MODELS

        return cls.name if MODELS.get(cls.name) is cls else f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        """Dimensions the tuner searches, given the fixed parameters: name → (``"int"`` or
        ``"float"``, low, high, log scale). Empty: the model has nothing to tune."""
        return {}

    @property
    def predicts_ratings(self) -> bool:
        """Whether ``predict_ratings`` works (:attr:`Capability.RATINGS`)."""
        return self.supports(Capability.RATINGS)

    def supports(self, capability: Capability) -> bool:
        """Whether this model (with its configuration) can do ``capability``."""
        return capability in self.capabilities

    def answers(self, queries: Queries) -> np.ndarray:
        """Which queries this model has a personal answer for: users it trained on (always),
        users with some history when it needs one, anyone when it does not. A fallback chain
        asks the next model for the others."""
        known = queries.users >= 0
        if not self.needs_history or known.all():
            return np.ones(len(queries), dtype=bool)
        has = np.diff(queries.seen()[0]) > 0
        if queries.session is not None:
            has |= np.diff(queries.session.indptr) > 0
        return known | has

    def _require(self, capability: Capability) -> None:
        if not self.supports(capability):
            raise NotSupportedError(f"{self.name} does not support {capability.value}")

    # -- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData, *, options: TrainingOptions | None = None,
            progress: ProgressCallback | None = None) -> Self:
        """Learn from ``data``; a second call replaces the first. Returns ``self``.

        The learned state is installed only when training succeeds: a fit that raises leaves
        the model as it was. Long fits call ``progress(description, done, total)`` as they go.
        """
        options = options or TrainingOptions()
        if options.device not in self.devices:
            raise NotSupportedError(f"{self.name} trains on {', '.join(self.devices)}, not "
                                    f"{options.device}")
        if options.device == "cuda" and not _cuda_available():
            raise NotSupportedError("device 'cuda' asked for, but no CUDA device is present")
        if data.n_users == 0 or data.feedback.nnz == 0:
            raise DataError("no training interactions")
        with options.thread_limit():
            state = self._train(data, options, progress)
        self._install(data.users, data.items, state, data)
        return self

    @abstractmethod
    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        """The learned state (attribute name → value, every name of ``state`` included).

        Must not change ``self``: :meth:`fit` installs what it returns.
        """

    def _install(self, users: Vocabulary, items: Vocabulary, state: Mapping[str, Any],
                 histories: HistorySource | None) -> None:
        """Replace all learned state at once (one assignment: readers see old or new)."""
        missing = [n for n in self.state if n not in state]
        if missing:
            raise TypeError(f"{type(self).__name__}._train returned no {', '.join(missing)}")
        self.__dict__ = {"config": self.config, "users_": users, "items_": items,
                         "histories_": histories, **state}

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The learned state as arrays and JSON (what :meth:`save` writes; never pickle)."""
        check_fitted(self)
        return {name: np.asarray(getattr(self, name)) for name in self.state}, {}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        """The learned attributes rebuilt from :meth:`get_state`'s arrays and JSON."""
        return {name: arrays[name] for name in self.state}

    def state_shapes(self) -> dict[str, Shape]:
        """The shape of each learned array (see :data:`Shape`), from the configuration.

        :meth:`set_state` checks a state against it before installing anything, so a saved
        model whose arrays were cut, damaged or mixed with another model's is refused at load
        instead of answering wrong. Arrays left out are not checked (a model written outside
        recengine may declare none); recengine's own models declare every array.
        """
        return {}

    def set_state(self, users: Vocabulary, items: Vocabulary, arrays: Mapping[str, np.ndarray],
                  meta: Mapping[str, Any], histories: HistorySource | None = None) -> Self:
        """Install a state from :meth:`get_state` (a model trained elsewhere, or a load).

        A state whose arrays are missing or disagree with each other or with the vocabularies
        (:meth:`state_shapes`, and each model's own checks in ``_restore_state``) is refused
        with a :class:`DataError`, and the model is left as it was.
        """
        missing = [name for name in self.state if name not in arrays]
        if missing:
            raise DataError(f"the saved state has no array {', '.join(map(repr, missing))}")
        _check_shapes(self.state_shapes(), arrays, {"users": len(users), "items": len(items)})
        self._install(users, items, self._restore_state(arrays, meta), histories)
        return self

    # -- scoring hooks ------------------------------------------------------------------------
    @abstractmethod
    def _score(self, queries: Queries) -> np.ndarray:
        """Scores ``[len(queries), n_items]`` (higher is better; -inf never recommended)."""

    def _embed(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """:attr:`Capability.RETRIEVAL`: ``_score`` as inner products, query vectors ``q`` and
        offsets ``c`` with ``_score(queries)[k] == q[k] @ self._item_vectors().T + c[k]``."""
        raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")

    def _item_vectors(self) -> np.ndarray:
        """The item side of :meth:`_embed`, ``[n_items, dim]``."""
        raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")

    def _similar_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        """:attr:`Capability.SIMILAR_RETRIEVAL`: vectors whose inner products are
        :meth:`_similar`'s similarities, for ``items`` (all when None)."""
        raise NotSupportedError(f"{self.name} has no vector form for similar items")

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """:attr:`Capability.SIMILAR_ITEMS`: similarity ``[len(items), n_items]``."""
        raise NotSupportedError(f"{self.name} cannot find similar items")

    def _similar_users(self, users: np.ndarray) -> np.ndarray:
        """:attr:`Capability.SIMILAR_USERS`: similarity ``[len(users), n_users]``."""
        raise NotSupportedError(f"{self.name} cannot find similar users")

    def _user_vectors(self, queries: Queries) -> np.ndarray:
        """:attr:`Capability.USER_VECTORS`: each query's user vector."""
        raise NotSupportedError(f"{self.name} has no user vectors")

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Scores ``[len(items), n_users]`` of every training user for each item.

        Generic: scores users in blocks and keeps the items' columns; factor models override it
        with one product.
        """
        n_users = len(self.users_)
        out = np.empty((len(items), n_users), dtype=np.float32)
        for start in range(0, n_users, DEFAULT_BATCH):
            block = np.arange(start, min(start + DEFAULT_BATCH, n_users))
            out[:, block] = np.asarray(self._score(self.training_queries(block)))[:, items].T
        return out

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """One reason per item for the one query in ``queries``, in words."""
        return [f"scored by {self.name}"] * len(items)

    # -- queries ------------------------------------------------------------------------------
    def _histories(self) -> HistorySource:
        if self.histories_ is None:
            raise NotSupportedError(
                f"this {self.name} model was loaded without histories: pass histories= to "
                "load (a TrainingData, or the registry version's), or query by history")
        return self.histories_

    def training_queries(self, users: np.ndarray) -> Queries:
        """Queries for training users, from the model's history source."""
        check_fitted(self)
        return self._histories().queries(np.asarray(users, dtype=np.int32))

    def history_queries(self, history: Sequence[str] | Mapping[str, float]) -> Queries:
        """A one-row query for a user known only by ``history`` (item ids in order, or
        id → feedback); unknown item ids are ignored."""
        check_fitted(self)
        weights = dict(history) if isinstance(history, Mapping) else None
        ids = list(history)
        idx = self.items_.index(ids, missing="negative")
        keep = idx >= 0
        w = (np.fromiter((weights[i] for i in ids), np.float32, count=len(ids))[keep]
             if weights is not None else np.ones(int(keep.sum()), np.float32))
        seqs = Sequences.from_rows([idx[keep].tolist()], [w.tolist()])
        return Queries(np.array([-1], np.int32), seqs.bag(len(self.items_)), seqs)

    def queries_from(self, query: Query) -> Queries:
        """The one-row :class:`Queries` of an id-level :class:`Query`.

        A known user with no ``query.history`` is asked as trained; events in
        ``query.history`` come after the training history (the server's live events), so the
        user is then asked by the whole history, folded in, as a user the model has not seen.
        """
        check_fitted(self)
        position = self.users_.get(query.user) if query.user is not None else -1
        if position >= 0:
            base = self.training_queries(np.array([position]))
        else:
            base = Queries(np.array([position], np.int32),
                           csr_from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                          np.zeros(0), (1, len(self.items_))),
                           Sequences.empty(1))
        if query.history is not None and len(query.history):
            sequences = base.sequences.append(self._events(query.history))
            base = Queries(np.array([-1], np.int32), sequences.bag(len(self.items_)), sequences)
        session = None
        if query.session:
            idx = self.items_.index(list(query.session), missing="negative")
            session = Sequences.from_rows([idx[idx >= 0].tolist()])
        features = (pd.DataFrame([dict(query.user_features)])
                    if query.user_features and self.supports(Capability.USER_FEATURES)
                    else base.user_features)
        # The query is freshly built for this request: set what the request adds in place.
        base.session = session
        base.user_features = features
        base.times = (None if query.time is None
                      else np.array([seconds_of(query.time)], dtype=np.int64))
        base.context = (dict(query.context),)
        return base

    def _events(self, history: Sequence[Event] | pd.DataFrame) -> Sequences:
        """One row of ordered events over this model's items (unknown items dropped)."""
        if isinstance(history, pd.DataFrame):
            idx = self.items_.index(history["item_id"].astype(str), missing="negative")
            keep = idx >= 0
            return Sequences.from_table(history[keep].reset_index(drop=True),
                                        np.zeros(int(keep.sum()), np.int64), idx[keep], 1)
        known = [(self.items_.get(e.item_id), e) for e in history]
        known = [(i, e) for i, e in known if i >= 0]
        types = sorted({e.event_type for _, e in known}) or [""]
        n = len(known)
        return Sequences(
            np.array([0, n], np.int64), np.fromiter((i for i, _ in known), np.int32, n),
            np.fromiter((e.weight for _, e in known), np.float32, n),
            np.fromiter((e.value for _, e in known), np.float32, n),
            np.fromiter((e.timestamp for _, e in known), np.int64, n),
            np.fromiter((types.index(e.event_type) for _, e in known), np.int16, n),
            tuple(types))

    # -- index level --------------------------------------------------------------------------
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

        A convenience over :meth:`recommend_queries`: training users' histories come from the
        model's history source; ``history`` (rows over items) gives them instead, for users not
        in training (pass -1 as their index).
        """
        check_fitted(self)
        users = np.asarray(users, dtype=np.int32)
        if history is not None:
            if history.shape != (len(users), len(self.items_)):
                raise DataError(f"history must be {len(users)} × {len(self.items_)}, "
                                f"got {history.shape[0]} × {history.shape[1]}")
            queries = Queries.from_bag(users, history)
        elif (users < 0).any():
            raise DataError("users given as -1 need a history")
        else:
            queries = self.training_queries(users)
        return self.recommend_queries(queries, n, exclude_seen=exclude_seen,
                                      candidates=candidates, transform=transform,
                                      batch_size=batch_size)

    def recommend_queries(
        self,
        queries: Queries,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        transform: ScoreTransform | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for each query, best first.

        ``candidates`` (item indices) restricts the answer to those items, ``exclude`` removes
        items; ``exclude_seen`` removes each query's bag. ``transform(scores)`` rewrites each
        block of score rows before the top-k (business rules, constraints). Short lists are
        padded with -1 and NaN.
        """
        check_fitted(self)
        plain = candidates is None and transform is None and exclude is None
        if self.retrieval_ is not None and plain:
            return self._recommend_approximate(queries, n, exclude_seen)
        return self._recommend_exact(queries, n, exclude_seen, candidates, exclude, transform,
                                     batch_size)

    def _recommend_exact(self, queries: Queries, n: int, exclude_seen: bool,
                         candidates: np.ndarray | None, exclude: np.ndarray | None,
                         transform: ScoreTransform | None,
                         batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
        blocked = self._blocked(candidates, exclude)
        out_idx = np.empty((len(queries), n), dtype=np.int32)
        out_val = np.empty((len(queries), n), dtype=np.float32)
        for start in range(0, len(queries), batch_size):
            stop = min(start + batch_size, len(queries))
            block = queries if (start, stop) == (0, len(queries)) else queries[start:stop]
            scores = np.array(self._score_among(block, blocked), dtype=np.float32)
            if transform is not None:
                scores = transform(scores)
            if blocked is not None:
                scores[:, blocked] = -np.inf
            if exclude_seen:
                indptr, indices = block.seen()
                r = np.repeat(np.arange(stop - start), np.diff(indptr))
                scores[r, indices] = -np.inf
            out_idx[start:stop], out_val[start:stop] = top_k(scores, n)
        return out_idx, out_val

    def _blocked(self, candidates: np.ndarray | None,
                 exclude: np.ndarray | None) -> np.ndarray | None:
        """The items a request rules out, as a mask: all but ``candidates``, and ``exclude``
        (None when it gives neither)."""
        if candidates is None and exclude is None:
            return None
        blocked = np.zeros(len(self.items_), dtype=bool)
        if candidates is not None:
            blocked[:] = True
            blocked[np.asarray(candidates, dtype=np.int64)] = False
        if exclude is not None:
            blocked[np.asarray(exclude, dtype=np.int64)] = True
        return blocked

    def _score_among(self, queries: Queries, blocked: np.ndarray | None) -> np.ndarray:
        """:meth:`_score` of a request that rules out the items ``blocked`` (a mask over
        items; None: none). They are dropped after scoring; a model whose scores depend on
        what it proposes (the hybrid) proposes among the rest instead."""
        return self._score(queries)

    def build_index(self, *, neighbours: int = 16, ef_construction: int = 80,
                    ef_search: int = 64, similar_items: bool = True) -> Self:
        """Answer plain top-k (no candidates, no transform) and similar items from HNSW
        indexes from now on.

        Approximate: see :mod:`recengine.models.retrieval` for the trade-off and the
        parameters. Only models with a vector form (:attr:`Capability.RETRIEVAL`,
        :attr:`Capability.SIMILAR_RETRIEVAL`) support it; a model with one of the two gets
        that index only. ``similar_items=False`` builds the top-k graph alone.
        """
        check_fitted(self)
        options = {"neighbours": neighbours, "ef_construction": ef_construction,
                   "ef_search": ef_search}
        if not (self.supports(Capability.RETRIEVAL)
                or self.supports(Capability.SIMILAR_RETRIEVAL)):
            raise NotSupportedError(f"{self.name} has no vector form for approximate retrieval")
        if self.supports(Capability.RETRIEVAL):
            self.retrieval_ = ItemIndex.build(self._item_vectors(), **options)
        if similar_items and self.supports(Capability.SIMILAR_RETRIEVAL):
            self.similar_index_ = ItemIndex.build(self._similar_vectors(), **options)
        return self

    @property
    def indexes(self) -> tuple[ItemIndex, ...]:
        """The HNSW indexes this model answers from (:meth:`build_index`)."""
        return tuple(i for i in (self.retrieval_, self.similar_index_) if i is not None)

    def drop_indexes(self) -> None:
        """Answer exactly from now on."""
        self.retrieval_ = self.similar_index_ = None

    def _recommend_approximate(self, queries: Queries, n: int,
                               exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-n from :attr:`retrieval_`; rows it leaves short are answered exactly."""
        assert self.retrieval_ is not None
        indptr, indices = queries.seen()
        seen = [indices[indptr[r]:indptr[r + 1]] for r in range(len(queries))]
        vectors, offsets = self._embed(queries)
        idx, val, short = self.retrieval_.search(vectors, n, seen if exclude_seen else None)
        val += offsets[:, None].astype(np.float32)
        if short.any():
            which = np.flatnonzero(short)
            idx[which], val[which] = self._recommend_exact(queries[which], n, exclude_seen,
                                                           None, None, None)
        return idx, val

    def scores(self, queries: Queries) -> np.ndarray:
        """Every item's score for each query, ``[len(queries), n_items]`` (what top-k ranks;
        -inf never recommended, seen items not removed): for composition, as the hybrid's
        candidate generation reads each source."""
        check_fitted(self)
        return np.asarray(self._score(queries))

    def query_vectors(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """Each query's vector and offset (:attr:`Capability.RETRIEVAL`): an item's score is
        the vector's inner product with the item's vector (those :meth:`build_index` indexes)
        plus the offset. For composition: the hybrid scores a few candidates this way, not the
        whole catalogue."""
        check_fitted(self)
        self._require(Capability.RETRIEVAL)
        return self._embed(queries)

    def explain_indices(self, queries: Queries, items: np.ndarray, *,
                        exclude: np.ndarray | None = None) -> list[str]:
        """A reason in words for each of ``items`` (indices) for the one query given, answered
        with the items ``exclude`` ruled out (what :meth:`recommend_queries` was told)."""
        check_fitted(self)
        blocked = self._blocked(None, exclude)
        if blocked is None:
            return self._explain(queries, np.asarray(items))
        return self._explain_among(queries, np.asarray(items), blocked)

    def _explain_among(self, queries: Queries, items: np.ndarray,
                       blocked: np.ndarray) -> list[str]:
        """:meth:`_explain` of an answer that ruled out the items ``blocked``: the same for a
        model whose scores do not depend on it (see :meth:`_score_among`)."""
        return self._explain(queries, items)

    def similarity(self, items: np.ndarray) -> np.ndarray:
        """Similarity ``[len(items), n_items]`` of item indices to every item
        (:attr:`Capability.SIMILAR_ITEMS`)."""
        check_fitted(self)
        self._require(Capability.SIMILAR_ITEMS)
        return np.asarray(self._similar(np.asarray(items)))

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
        """Top-``n`` for a user known only by their items (ids in order, or id → feedback).

        Unknown item ids in the history are ignored.
        """
        cands = None if items is None else self.items_.index(items, missing="negative")
        idx, val = self.recommend_queries(
            self.history_queries(history), n, exclude_seen=exclude_seen,
            candidates=None if cands is None else cands[cands >= 0])
        return self.items_.id_of(idx[0]), val[0]

    def recommend_query(self, query: Query, n: int = 10, *,
                        exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item ids and scores for one :class:`Query` (history, session, features,
        time, context, candidates and exclusions)."""
        queries = self.queries_from(query)
        cands = None
        if query.candidates is not None:
            cands = self.items_.index(list(query.candidates), missing="negative")
            cands = cands[cands >= 0]
        excluded = self.items_.index(list(query.exclude), missing="negative")
        idx, val = self.recommend_queries(queries, n, exclude_seen=exclude_seen,
                                          candidates=cands,
                                          exclude=excluded[excluded >= 0] if len(excluded)
                                          else None)
        return self.items_.id_of(idx[0]), val[0]

    def similar_items(self, items: str | Sequence[str], n: int = 10) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """The ``n`` items most similar to each item (the item itself excluded)."""
        check_fitted(self)
        self._require(Capability.SIMILAR_ITEMS)
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

    def similar_users(self, users: str | Sequence[str], n: int = 10) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """The ``n`` users most similar to each user, the user excluded
        (:attr:`Capability.SIMILAR_USERS`)."""
        check_fitted(self)
        self._require(Capability.SIMILAR_USERS)
        scalar = isinstance(users, str)
        idx = self.users_.index([users] if scalar else users)
        sims = np.array(self._similar_users(idx), dtype=np.float32)
        sims[np.arange(len(idx)), idx] = -np.inf
        top, val = top_k(sims, n)
        ids = self.users_.id_of(top)
        return (ids[0], val[0]) if scalar else (ids, val)

    def fold_in(self, history: Sequence[str] | Mapping[str, float]) -> np.ndarray:
        """The vector of a user known only by their items (:attr:`Capability.USER_VECTORS`)."""
        check_fitted(self)
        self._require(Capability.USER_VECTORS)
        return self._user_vectors(self.history_queries(history))[0]

    def audience(self, items: str | Sequence[str], n: int = 100, *, exclude_seen: bool = True,
                 combine: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Targeting: the ``n`` users most likely to engage with each item, best first.

        With ``combine=True`` the items are one promotion: users are ranked by their mean score
        over the items. ``exclude_seen`` leaves out users who already chose the item (any of
        them, when combined): they are read from the model's history source.
        """
        check_fitted(self)
        scalar = isinstance(items, str)
        idx = self.items_.index([items] if scalar else items)
        scores = np.array(self._item_scores(idx), dtype=np.float32)
        if exclude_seen:
            seen = self._histories().item_users(idx)
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
            scores = self._score(self.training_queries(block))
            pick = (inverse >= start) & (inverse < start + len(block))
            where = np.flatnonzero(ok)[pick]
            out[where] = scores[inverse[pick] - start, items[where]]
        return out

    def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Each (user, item) pair's predicted rating; NaN where the user or item is unknown."""
        check_fitted(self)
        return self.rating_indices(self.users_.index(users, missing="negative"),
                                   self.items_.index(items, missing="negative"))

    def rating_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings by index (-1 gives NaN). For a model whose scores are ratings
        (explicit WALS, the bias baseline) these are its pair scores; a model that ranks by
        something else and predicts ratings apart (the hybrid's rating head) overrides it."""
        self._require(Capability.RATINGS)
        return self.score_indices(users, items)

    def explain(self, user: str, items: Sequence[str]) -> list[str]:
        """A reason in words for each of ``items`` recommended to ``user``."""
        check_fitted(self)
        u = self.users_.index([user])
        return self._explain(self.training_queries(u), self.items_.index(items))

    def explain_history(self, history: Sequence[str] | Mapping[str, float],
                        items: Sequence[str]) -> list[str]:
        """A reason for each of ``items`` recommended to a user known only by ``history``."""
        return self._explain(self.history_queries(history), self.items_.index(items))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (class, config, JSON state), ``state.npz`` (vocabularies and
        arrays) and, when the model has them, its HNSW graphs. No training matrix: histories
        are the caller's (a registry version saves its training data once)."""
        check_fitted(self)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays, meta = self.get_state()
        (path / "model.json").write_text(json.dumps(
            {"model": self.key(), "format": FORMAT_VERSION,
             "config": self.config.model_dump(mode="json"), "state": meta}, indent=2))
        np.savez(path / "state.npz", allow_pickle=False, users_=self.users_.to_array(),
                 items_=self.items_.to_array(), **arrays)
        self.write_indexes(path)
        return path

    def write_indexes(self, path: Path) -> None:
        """Write the HNSW graphs (:meth:`build_index`) into the folder ``path``: what
        :meth:`save` does, and a model made of others (the hybrid) does for each of them."""
        for index, name in ((self.retrieval_, INDEX_FILE),
                            (self.similar_index_, SIMILAR_INDEX_FILE)):
            if index is not None:
                index.write(path / name)

    def read_indexes(self, path: Path) -> None:
        """Read the graphs :meth:`write_indexes` wrote, each checked against the vectors it
        must index."""
        if (path / INDEX_FILE).exists():
            self.retrieval_ = ItemIndex.read(path / INDEX_FILE, vectors=self._item_vectors())
        if (path / SIMILAR_INDEX_FILE).exists():
            self.similar_index_ = ItemIndex.read(path / SIMILAR_INDEX_FILE,
                                                 vectors=self._similar_vectors())

    @classmethod
    def load(cls, path: str | Path, *, histories: HistorySource | None = None) -> Recommender:
        """Read a model written by :meth:`save`; never runs code from the file (no pickle).

        ``histories`` (e.g. the :class:`TrainingData` it was trained on) is where training
        users' histories come from; without it the model answers users by history only.
        A folder with no ``model.json`` is :class:`ModelNotFoundError`; one that cannot be
        served whole (a file damaged or cut short, arrays that disagree, a graph over other
        vectors) is :class:`ModelLoadError`, naming the folder and the problem.
        """
        path = Path(path)
        try:
            text = (path / "model.json").read_text()
        except OSError as exc:
            raise ModelNotFoundError(f"no saved model at {path} ({exc})") from None
        try:
            return cls._read(path, json.loads(text), histories)
        except ModelLoadError:
            raise
        except (RecengineError, OSError, ValueError, KeyError, TypeError, EOFError,
                RuntimeError, zipfile.BadZipFile) as exc:
            # What reading damaged files raises: numpy's and zipfile's on a cut state.npz,
            # pydantic's on a bad config, faiss's on a cut graph, KeyError on a missing array.
            raise ModelLoadError(_failure(exc), path=path) from None

    @staticmethod
    def _read(path: Path, meta: dict[str, Any], histories: HistorySource | None) -> Recommender:
        """The model of ``path``'s files, checked whole before anything is returned."""
        from recengine.models.registry import model_class

        klass = model_class(meta["model"])
        model = klass(klass.Config.model_validate(meta["config"]))
        with np.load(path / "state.npz", allow_pickle=False) as z:
            arrays = dict(z)
        users = Vocabulary.from_array(arrays.pop("users_"), name="user")
        items = Vocabulary.from_array(arrays.pop("items_"), name="item")
        if histories is None and "user_items_data" in arrays:  # format 1 kept its matrix
            histories = _MatrixHistories(check_csr(
                "user_items", [arrays[f"user_items_{part}"] for part in ("data", "indices",
                                                                          "indptr")],
                (len(users), len(items))))
        model.set_state(users, items, arrays, meta.get("state", {}), histories)
        model.read_indexes(path)
        return model


def _failure(exc: BaseException) -> str:
    """What went wrong reading a saved model, in words."""
    if isinstance(exc, RecengineError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"the saved files lack {exc.args[0]!r}"
    if isinstance(exc, zipfile.BadZipFile | EOFError):
        return f"state.npz is damaged or cut short ({exc})"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _MatrixHistories:
    """Histories from a feedback matrix alone (models saved in format 1 carried one)."""

    feedback: sp.csr_array

    def queries(self, users: np.ndarray) -> Queries:
        return Queries.from_bag(users, self.feedback[users])

    def item_users(self, items: np.ndarray) -> sp.csr_array:
        return sp.csr_array(self.feedback[:, items].T.tocsr())


"""Weighted alternating least squares (WALS): user and item embeddings from a sparse matrix.

One model family for both kinds of feedback (see :mod:`recengine.models.kernels` for the
objective):

- ``feedback="implicit"`` (Hu, Koren & Volinsky 2008): every observed pair has preference 1 and
  weight ``w0 + alpha · (r / r̄) · C_i · R_u`` (with ``w0 = 1`` this is the paper's
  ``c = 1 + α r``, ``r`` measured in units of ``r̄``, the mean observed feedback; with
  ``confidence="raw"``, ``r̄ = 1``); every unobserved pair has preference 0 and weight ``w0``.
  Dividing by ``r̄`` makes ``alpha`` mean the same on binary clicks, star values and play
  counts, so one default serves all three.
- ``feedback="explicit"`` (TensorFlow's WALS): observed ratings are the targets with weight
  ``w0 + alpha · C_i · R_u``; unobserved cells pull predictions towards 0 with a small weight
  ``w0``; optional user and item biases around the global mean.

``C_i ∝ n_i^(−item_weight_exponent)`` favours rare items (the course's column weights) and
``R_u ∝ n_u^(−user_weight_exponent)`` tempers prolific users; both are scaled to mean 1 over the
observed pairs so that ``alpha`` keeps its meaning.

Defaults depend on the feedback, and were chosen on validation carves of the training parts
(never the test parts) of MovieLens 100K (binary, stars, and the u1–u5 folds' ratings) and
Last.fm 2K play counts (``benchmarks/bench_defaults.py``, docs/defaults-study.md): implicit
64 factors, λ = 60, α = 10, item weight exponent 0.3; explicit (``feedback="explicit"`` alone)
64 factors, biases, λ = 0.13 scaled by each row's count, ``w0`` = 0.001, α = 1. Both run 15
sweeps. ``recengine tune`` finds better ones per dataset. Each sweep solves all users, then all
items, exactly (Cholesky) or by a few warm-started conjugate-gradient steps, in compiled
parallel loops.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator
from threadpoolctl import threadpool_limits

from recengine.data.query import HistorySource, Queries
from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.data.vocabulary import Vocabulary
from recengine.errors import DataError, RecengineError
from recengine.models import kernels
from recengine.models.base import (
    Capability,
    ModelConfig,
    Recommender,
    Shape,
    TrainingOptions,
    check_fitted,
)
from recengine.progress import ProgressCallback

__all__ = ["WALS", "ModelFitError"]


#: What ``feedback="explicit"`` changes when not given: ratings are targets, not confidences.
EXPLICIT_DEFAULTS: dict[str, Any] = {"regularization": 0.13, "scale_regularization": True,
                                     "alpha": 1.0, "unobserved_weight": 0.001,
                                     "item_weight_exponent": 0.0, "biases": True}


class ModelFitError(RecengineError):
    """Training diverged (non-finite factors): lower ``alpha`` or raise ``regularization``."""


@dataclass(frozen=True)
class _Side:
    """One side's least-squares problem: its rows' observed pairs, weights, targets, λ."""

    indptr: np.ndarray
    indices: np.ndarray
    weight: np.ndarray
    values: np.ndarray
    target: np.ndarray
    reg: np.ndarray


@dataclass
class _Biases:
    """The global mean and the biases while training (all empty without biases)."""

    mean: np.float32
    user: np.ndarray
    item: np.ndarray

    def state(self) -> dict[str, np.ndarray]:
        return {"global_mean_": np.asarray(self.mean, np.float32), "user_bias_": self.user,
                "item_bias_": self.item}


class WALS(Recommender):
    """Matrix factorisation by weighted alternating least squares.

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": list("aabbc"), "item_id": list("xyyzx"),
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> model = WALS(factors=2, iterations=5).fit(TrainingData.from_interactions(pairs))
    >>> model.item_factors_.shape, model.user_factors_.shape
    ((3, 2), (3, 2))
    """

    name = "wals"
    needs_history = True
    capabilities = frozenset({Capability.SIMILAR_ITEMS, Capability.SIMILAR_USERS,
                              Capability.USER_VECTORS, Capability.RETRIEVAL,
                              Capability.SIMILAR_RETRIEVAL})

    class Config(ModelConfig):
        """Defaults are for implicit feedback; ``feedback="explicit"`` brings its own
        (:data:`EXPLICIT_DEFAULTS`) for every field not given."""

        factors: int = Field(64, ge=1, description="Embedding size.")
        iterations: int = Field(15, ge=1, description="Sweeps (users, then items).")
        regularization: float = Field(60.0, ge=0, description="L2 weight λ on embeddings.")
        scale_regularization: bool = Field(
            False, description="Multiply λ by each row's number of pairs (ALS-WR, as Spark).")
        feedback: Literal["implicit", "explicit"] = "implicit"
        alpha: float = Field(10.0, ge=0, description="Weight of observed feedback.")
        confidence: Literal["scaled", "raw"] = Field(
            "scaled", description="Implicit: weigh r / r̄, feedback in units of its mean "
            "(one alpha fits binary, star and count feedback), or r as it is.")
        unobserved_weight: float = Field(
            1.0, ge=0, description="w0: weight pulling unobserved cells to 0 (1 for implicit; "
            "small, e.g. 0.01, for explicit).")
        item_weight_exponent: float = Field(
            0.3, ge=0, description="Item weight C_i ∝ n_i^-e: > 0 favours rare items.")
        user_weight_exponent: float = Field(
            0.0, ge=0, description="User weight R_u ∝ n_u^-e: > 0 tempers prolific users.")
        biases: bool = Field(False, description="Learn user and item biases (explicit only).")
        solver: Literal["cg", "cholesky"] = "cg"
        cg_steps: int = Field(3, ge=1, description="Conjugate-gradient steps per sweep.")
        init_scale: float = Field(0.01, gt=0, description="Std of the random initial factors.")
        similarity: Literal["cosine", "dot"] = Field(
            "cosine", description="How similar items and users are compared.")
        random_state: int = 0
        num_threads: int = Field(0, ge=0, description="0: all cores (this fit only; "
                                 "TrainingOptions.threads overrides it).")

        @model_validator(mode="before")
        @classmethod
        def _explicit_defaults(cls, values: Any) -> Any:
            if isinstance(values, Mapping) and values.get("feedback") == "explicit":
                return EXPLICIT_DEFAULTS | dict(values)
            return values

    config: Config
    #: ``weight_norms_``: the means that scaled user weights, item weights and (implicit)
    #: feedback to 1, in that order; new rows are scaled alike.
    state: ClassVar[tuple[str, ...]] = (
        "user_factors_", "item_factors_", "user_bias_", "item_bias_", "global_mean_",
        "item_weights_", "user_weights_", "weight_norms_", "item_gram_", "user_gram_")
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    global_mean_: np.ndarray
    item_weights_: np.ndarray
    user_weights_: np.ndarray
    #: The means that scaled user and item weights to 1 (new rows are scaled alike).
    weight_norms_: np.ndarray
    #: ``w0 · YᵀY`` and ``w0 · XᵀX``, shared by every fold-in of a user or an item.
    item_gram_: np.ndarray
    user_gram_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        f = self.config.factors
        with_bias = self.config.biases
        return {"user_factors_": ("users", f), "item_factors_": ("items", f),
                "user_bias_": ("users",) if with_bias else (0,),
                "item_bias_": ("items",) if with_bias else (0,), "global_mean_": (),
                "item_weights_": ("items",), "user_weights_": ("users",), "weight_norms_": (3,),
                "item_gram_": (f, f), "user_gram_": (f, f)}

    def supports(self, capability: Capability) -> bool:
        """Rating prediction only with explicit feedback."""
        if capability == Capability.RATINGS:
            return self.config.feedback == "explicit"
        return super().supports(capability)

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space: dict[str, tuple[str, float, float, bool]] = {
            "factors": ("int", 8, 128, True),
            "regularization": ("float", 1e-2, 1e2, True),
            "iterations": ("int", 8, 25, False),
        }
        if fixed.get("feedback", "implicit") == "implicit":
            space |= {"alpha": ("float", 0.05, 50.0, True),
                      "item_weight_exponent": ("float", 0.0, 1.0, False)}
        else:
            space |= {"unobserved_weight": ("float", 1e-3, 0.3, True)}
        return space

    # -- training -----------------------------------------------------------------------------
    def _matrix(self, data: TrainingData) -> sp.csr_array:
        if self.config.feedback == "explicit":
            if not data.has_ratings:
                raise DataError("explicit WALS needs ratings; this data has none "
                                "(use feedback='implicit')")
            return data.ratings
        return data.feedback

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        cfg = self.config
        if cfg.biases and cfg.feedback != "explicit":
            raise DataError("biases apply to explicit feedback only", column="biases")
        threads = TrainingOptions(threads=options.threads or cfg.num_threads or None)
        with threads.thread_limit():
            return self._alternate(sp.csr_array(self._matrix(data), dtype=np.float32),
                                   options.seed_or(cfg.random_state), progress)

    def _alternate(self, matrix: sp.csr_array, seed: int,
                   progress: ProgressCallback | None) -> dict[str, Any]:
        """The sweeps; every intermediate lives in locals until the state is returned."""
        cfg = self.config
        users, items, weights = self._sides(matrix)
        n_users, n_items = len(users.reg), len(items.reg)
        biases = _Biases(np.float32(users.values.mean() if cfg.biases else 0.0),
                         np.zeros(n_users if cfg.biases else 0, np.float32),
                         np.zeros(n_items if cfg.biases else 0, np.float32))
        rng = np.random.default_rng(seed)
        # Drawn in float32 and scaled in place: a float64 draw of 100,000 × 64 and its scaled
        # copy were the fit's memory peak (100 MB for a 25 MB result).
        X = rng.standard_normal((n_users, cfg.factors), dtype=np.float32)
        Y = rng.standard_normal((n_items, cfg.factors), dtype=np.float32)
        X *= np.float32(cfg.init_scale)
        Y *= np.float32(cfg.init_scale)
        # numba runs the rows in parallel; BLAS inside each thread must not fan out again.
        with threadpool_limits(1, user_api="blas"):
            for sweep in range(cfg.iterations):
                X = self._solve(users, X, Y, biases, solving_users=True)
                Y = self._solve(items, Y, X, biases, solving_users=False)
                if not (np.isfinite(X).all() and np.isfinite(Y).all()):
                    raise ModelFitError(f"factors became non-finite at sweep {sweep + 1}: "
                                        "lower alpha or raise regularization")
                if progress:
                    progress("training wals", sweep + 1, cfg.iterations)
        return weights | biases.state() | self._factor_state(X, Y)

    def _factor_state(self, X: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
        """Learned factors and the grams every fold-in shares."""
        w0 = self.config.unobserved_weight
        return {"user_factors_": X, "item_factors_": Y, "item_gram_": _gram(Y, w0),
                "user_gram_": _gram(X, w0)}

    @classmethod
    def from_factors(cls, users: Sequence[str], items: Sequence[str],
                     user_factors: np.ndarray, item_factors: np.ndarray, *,
                     histories: HistorySource | None = None,
                     user_bias: np.ndarray | None = None, item_bias: np.ndarray | None = None,
                     global_mean: float = 0.0, **params: Any) -> WALS:
        """A fitted WALS from factors trained elsewhere (Spark, a GPU), without refitting.

        ``params`` are the configuration the factors were trained with (``feedback``,
        ``regularization``, ``unobserved_weight``, ...): fold-in and explanations solve the same
        problem. Row weights are taken as uniform (``item_weight_exponent`` and
        ``user_weight_exponent`` 0) and feedback as unscaled (``r̄ = 1``). ``histories`` is where
        training users' histories come from.

        >>> model = WALS.from_factors(["u", "v"], ["a", "b", "c"], np.eye(2, 3),
        ...                           np.eye(3, 3), factors=3)
        >>> model.score(["v", "v"], ["a", "b"]).tolist()
        [0.0, 1.0]
        >>> model.similar_items("b", n=1)[1].tolist()
        [0.0]
        """
        model = cls(**({"item_weight_exponent": 0.0, "user_weight_exponent": 0.0} | params))
        cfg = model.config
        X = np.ascontiguousarray(user_factors, dtype=np.float32)
        Y = np.ascontiguousarray(item_factors, dtype=np.float32)
        if X.shape != (len(users), cfg.factors) or Y.shape != (len(items), cfg.factors):
            raise DataError(f"factors must be {len(users)} × {cfg.factors} and {len(items)} × "
                            f"{cfg.factors}, got {X.shape} and {Y.shape}", column="factors")
        if cfg.item_weight_exponent or cfg.user_weight_exponent:
            raise DataError("factors trained elsewhere carry no row weights: pass "
                            "item_weight_exponent=0 and user_weight_exponent=0")
        with_bias = cfg.biases
        biases = _Biases(np.float32(global_mean if with_bias else 0.0),
                         np.asarray(user_bias if with_bias else [], np.float32),
                         np.asarray(item_bias if with_bias else [], np.float32))
        if with_bias and (len(biases.user) != len(users) or len(biases.item) != len(items)):
            raise DataError("biases=True needs user_bias and item_bias, one per id",
                            column="biases")
        state = ({"item_weights_": np.ones(len(items), np.float32),
                  "user_weights_": np.ones(len(users), np.float32),
                  "weight_norms_": np.ones(3, np.float64)}
                 | biases.state() | model._factor_state(X, Y))
        model._install(Vocabulary(users, name="user"), Vocabulary(items, name="item"), state,
                       histories)
        return model

    def _row_weights(self, matrix: sp.csr_array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each pair's row (user) index, and the learned row weights ``R_u`` and ``C_i`` with
        the means that scaled them and the feedback (``weight_norms_``). ``matrix`` is sorted."""
        cfg = self.config
        n_users, n_items = matrix.shape
        rows = np.repeat(np.arange(n_users, dtype=matrix.indices.dtype), np.diff(matrix.indptr))
        scale = (float(matrix.data.mean()) if cfg.feedback == "implicit"
                 and cfg.confidence == "scaled" and matrix.nnz else 1.0)
        return rows, self._learned_weights(np.diff(matrix.indptr),
                                           np.bincount(matrix.indices, minlength=n_items), scale)

    def _learned_weights(self, user_counts: np.ndarray, item_counts: np.ndarray,
                         scale: float) -> dict[str, np.ndarray]:
        """The row weights ``R_u`` and ``C_i`` of rows with these numbers of pairs, and
        ``weight_norms_``: their scales and the feedback's (``scale``; 1 when not positive)."""
        cfg = self.config
        item_weights, item_norm = _side_weights(item_counts, cfg.item_weight_exponent)
        user_weights, user_norm = _side_weights(user_counts, cfg.user_weight_exponent)
        return {"item_weights_": item_weights, "user_weights_": user_weights,
                "weight_norms_": np.array([user_norm, item_norm, scale if scale > 0 else 1.0],
                                          np.float64)}

    def _sides(self, matrix: sp.csr_array) -> tuple[_Side, _Side, dict[str, np.ndarray]]:
        """Both least-squares problems (users, then items), built once per fit, and the row
        weights learned with them."""
        cfg = self.config
        matrix.sort_indices()
        rows, learned = self._row_weights(matrix)
        weight = self._pair_weights(matrix.data, learned["item_weights_"][matrix.indices],
                                    learned["user_weights_"][rows],
                                    float(learned["weight_norms_"][2]))
        del rows  # one integer per pair: gone before the transpose, the fit's memory peak
        by_item, order = _transpose(matrix)
        # Implicit targets are all 1: one array serves both sides (both have one entry per pair).
        ones = np.ones_like(matrix.data) if cfg.feedback == "implicit" else None
        return (self._side(matrix, weight, ones), self._side(by_item, weight[order], ones),
                learned)

    def _side(self, matrix: sp.csr_array, weight: np.ndarray, ones: np.ndarray | None) -> _Side:
        """``ones``: the implicit targets; explicit ones are the matrix's values."""
        cfg = self.config
        counts = np.diff(matrix.indptr)
        reg = _regularization(cfg, counts)
        target = matrix.data if ones is None else ones
        return _Side(matrix.indptr, matrix.indices, weight, matrix.data, target,
                     reg.astype(np.float64))

    def _pair_weights(self, values: np.ndarray, item_w: np.ndarray, user_w: np.ndarray,
                      scale: float) -> np.ndarray:
        """``w0 + α · (r / scale) · C_i · R_u`` (implicit), ``w0 + α · C_i · R_u`` (explicit)."""
        cfg = self.config
        strength = values / scale if cfg.feedback == "implicit" else np.ones_like(values)
        return (cfg.unobserved_weight + cfg.alpha * strength * item_w * user_w).astype(
            np.float32)

    def _solve(self, side: _Side, own: np.ndarray, other: np.ndarray, biases: _Biases,
               *, solving_users: bool) -> np.ndarray:
        """One half-sweep: re-solve ``own`` (users or items) with ``other`` fixed."""
        cfg = self.config
        target = side.target
        if cfg.biases:
            other_bias = biases.item if solving_users else biases.user
            target = (side.values - biases.mean - other_bias[side.indices]).astype(np.float32)
            own_bias = biases.user if solving_users else biases.item
            own, other, gram = self._with_bias_columns(own, own_bias, other)
        else:
            gram = _gram(other, cfg.unobserved_weight)
        args = (side.indptr, side.indices, side.weight, target, other, gram, side.reg, own,
                np.float32(cfg.unobserved_weight))
        if cfg.solver == "cholesky":
            kernels.solve_cholesky(*args)
        else:
            kernels.solve_cg(*args, cfg.cg_steps)
        if cfg.biases:
            if solving_users:
                biases.user = own[:, -1].copy()
            else:
                biases.item = own[:, -1].copy()
            own = np.ascontiguousarray(own[:, :-1])
        return own

    def _with_bias_columns(self, own: np.ndarray, own_bias: np.ndarray, other: np.ndarray,
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append the solved side's bias as an unknown and a constant 1 on the fixed side.

        The unobserved-cell term penalises only the factor part, so the gram is zero-padded.
        """
        own_aug = np.column_stack([own, own_bias]).astype(np.float32)
        other_aug = np.column_stack([other, np.ones(len(other), np.float32)])
        k = own.shape[1]
        gram = np.zeros((k + 1, k + 1), np.float32)
        gram[:k, :k] = _gram(other, self.config.unobserved_weight)
        return own_aug, np.ascontiguousarray(other_aug), gram

    # -- scoring ------------------------------------------------------------------------------
    def _user_vectors(self, queries: Queries) -> np.ndarray:
        """Learned vectors for known users; folded in from the bag for the others (-1)."""
        users = queries.users
        known = users >= 0
        if known.all():
            return self.user_factors_[users]
        vectors = np.empty((len(users), self.item_factors_.shape[1]), np.float32)
        vectors[known] = self.user_factors_[users[known]]
        vectors[~known], _ = self._fold_in(queries.bag[np.flatnonzero(~known)])
        return vectors

    def _score(self, queries: Queries) -> np.ndarray:
        scores = self._user_vectors(queries) @ self.item_factors_.T
        if self.config.biases:
            scores += self._offsets(queries.users)[:, None] + self.item_bias_[None, :]
        return scores

    def _offsets(self, users: np.ndarray) -> np.ndarray:
        """Global mean plus user bias (0 for users known only by their history)."""
        user_bias = np.where(users >= 0, self.user_bias_[np.maximum(users, 0)], 0.0)
        return (self.global_mean_ + user_bias).astype(np.float32)

    def _embed(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """User vectors (with a 1 that picks up the item bias) and :meth:`_offsets`."""
        vectors = self._user_vectors(queries)
        if not self.config.biases:
            return vectors, np.zeros(len(queries), np.float32)
        ones = np.ones((len(queries), 1), np.float32)
        return np.hstack([vectors, ones]), self._offsets(queries.users)

    def _item_vectors(self) -> np.ndarray:
        """Item factors, with the item bias as one more column when biases are learned."""
        if not self.config.biases:
            return self.item_factors_
        return np.column_stack([self.item_factors_, self.item_bias_]).astype(np.float32)

    def score_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Pair scores as row-wise dot products (no full score rows)."""
        check_fitted(self)
        out = np.full(len(users), np.nan, dtype=np.float32)
        ok = (users >= 0) & (items >= 0)
        u, i = users[ok], items[ok]
        out[ok] = np.einsum("ij,ij->i", self.user_factors_[u], self.item_factors_[i])
        if self.config.biases:
            out[ok] += self.global_mean_ + self.user_bias_[u] + self.item_bias_[i]
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._similarity(self.item_factors_[items], self.item_factors_, self._item_norms)

    def _similar_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        factors = self.item_factors_ if items is None else self.item_factors_[items]
        return factors if self.config.similarity == "dot" else _unit(factors)

    @functools.cached_property
    def _item_norms(self) -> np.ndarray:
        """Each item vector's length, kept: computing 100,000 of them took most of a call."""
        return np.linalg.norm(self.item_factors_, axis=1)

    def _similarity(self, query: np.ndarray, table: np.ndarray,
                    norms: np.ndarray | None = None) -> np.ndarray:
        """``query`` rows against ``table`` rows; ``norms``: the table's row lengths, if known."""
        if self.config.similarity == "dot":
            return query @ table.T
        # The table's norms divide the product: cheaper than a normalised copy of the table.
        norms = np.linalg.norm(table, axis=1) if norms is None else norms
        return (_unit(query) @ table.T) / np.maximum(norms, _TINY)

    def _similar_users(self, users: np.ndarray) -> np.ndarray:
        return self._similarity(self.user_factors_[users], self.user_factors_)

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        scores = self.item_factors_[items] @ self.user_factors_.T
        if self.config.biases:
            scores += (self.global_mean_ + self.item_bias_[items])[:, None] + self.user_bias_
        return scores

    # -- fold-in and explanations -----------------------------------------------------------
    def _fold_in(self, history: sp.csr_array, *, items: bool = False,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Exact vectors for new rows against the current factors: new users by default.

        ``history`` rows run over items (a new user's pairs) or, with ``items=True``, over
        users (a new item's pairs); values are feedback (implicit) or ratings (explicit), as in
        training. Returns the vectors and the pair weights used (for explanations). A folded-in
        row gets no bias of its own.
        """
        cfg = self.config
        history = sp.csr_array(history, dtype=np.float32)
        history.sort_indices()
        counts = np.diff(history.indptr)
        rows = np.repeat(np.arange(history.shape[0]), counts)
        fixed, gram = (self.user_factors_, self.user_gram_) if items else (
            self.item_factors_, self.item_gram_)
        exponent = cfg.item_weight_exponent if items else cfg.user_weight_exponent
        new_w = _scaled_weights(counts, exponent, float(self.weight_norms_[int(items)]))
        weight = self._pair_weights(history.data, self._existing_weights(items)[history.indices],
                                    new_w[rows], self._feedback_scale)
        target = np.ones(history.nnz, np.float32) if cfg.feedback == "implicit" else (
            history.data - self.global_mean_).astype(np.float32)
        if cfg.biases:
            other_bias = self.user_bias_ if items else self.item_bias_
            target -= other_bias[history.indices]
        reg = self._row_regularization(counts)
        out = np.zeros((history.shape[0], fixed.shape[1]), np.float32)
        solve = kernels.solve_cholesky if history.shape[0] > 1 else kernels.solve_cholesky_serial
        solve(history.indptr, history.indices, weight, target, fixed, gram,
              reg.astype(np.float64), out, np.float32(cfg.unobserved_weight))
        return out, weight

    def _row_regularization(self, counts: np.ndarray) -> np.ndarray:
        """λ for new rows with ``counts`` pairs, as training used it (fold-in solves the same
        problem)."""
        return _regularization(self.config, counts)

    @property
    def _feedback_scale(self) -> float:
        """``r̄``; 1 for models saved before feedback was scaled (two norms only)."""
        norms = self.weight_norms_
        return float(norms[2]) if len(norms) > 2 else 1.0

    def _existing_weights(self, users: bool) -> np.ndarray:
        """Training rows' weights: ``R_u`` per user (if ``users``) or ``C_i`` per item."""
        return self.user_weights_ if users else self.item_weights_

    def fold_in_item(self, audience: list[str] | dict[str, float]) -> np.ndarray:
        """The embedding of a new item from the users who chose it (ids, or id → value).

        Unknown user ids are ignored. The item can then be scored and targeted at once.
        """
        check_fitted(self)
        weights = dict(audience) if isinstance(audience, dict) else dict.fromkeys(audience, 1.0)
        idx = self.users_.index(list(weights), missing="negative")
        values = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        keep = idx >= 0
        row = csr_from_pairs(np.zeros(int(keep.sum()), np.int64), idx[keep], values[keep],
                             (1, len(self.users_)))
        vectors, _ = self._fold_in(row, items=True)
        return vectors[0]

    def explain_contributions(self, history: list[str] | dict[str, float],
                              item: str) -> dict[str, float]:
        """How much each past item adds to ``item``'s score for a user with this history.

        With ``x = A⁻¹ Σ_j w_j a_j y_j`` (the exact fold-in), the score ``x·y_i`` splits into
        ``Σ_j w_j a_j (y_iᵀ A⁻¹ y_j)``: one term per past item, adding up to the score's
        factor part (biases, if any, are the rest).
        """
        row = self.history_queries(history).bag
        row.sort_indices()
        return dict(zip(self.items_.ids[row.indices],
                        self._contributions(row, self.items_.index([item]))[0].tolist(),
                        strict=True))

    def _contributions(self, row: sp.csr_array, items: np.ndarray) -> np.ndarray:
        """``[len(items), row.nnz]``: each past item's share of each item's score (one solve)."""
        cfg = self.config
        _, weight = self._fold_in(row)
        Y = self.item_factors_.astype(np.float64)
        past = Y[row.indices]
        counts = row.nnz
        reg = float(self._row_regularization(np.array([counts]))[0])
        A = (self.item_gram_ + reg * np.eye(Y.shape[1])
             + (past * (weight - cfg.unobserved_weight)[:, None]).T @ past)
        if cfg.feedback == "implicit":
            target = np.ones(row.nnz)
        else:
            target = row.data - float(self.global_mean_) - (
                self.item_bias_[row.indices] if cfg.biases else 0.0)
        solved = np.linalg.solve(A, Y[np.asarray(items)].T)  # [factors, len(items)]
        return (weight * target)[None, :] * (past @ solved).T

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        row = sp.csr_array(queries.bag, dtype=np.float32)
        row.sort_indices()
        if row.nnz == 0:
            return ["popular with similar users"] * len(items)
        reasons = []
        for contrib in self._contributions(row, items):
            best = np.argsort(-contrib, kind="stable")[:2]
            names = [str(self.items_.ids[row.indices[j]]) for j in best if contrib[j] > 0]
            reasons.append("because you liked " + " and ".join(names) if names
                           else "matches your overall taste")
        return reasons


#: The smallest norm a vector is divided by (an all-zero vector stays zero).
_TINY = 1e-12


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), _TINY)


def _regularization(cfg: WALS.Config, counts: np.ndarray) -> np.ndarray:
    """λ per row: scaled by its number of pairs (ALS-WR), at least once, so that a row without
    pairs (an item nobody rated) still has a unique solution."""
    if not cfg.scale_regularization:
        return np.full(len(counts), cfg.regularization, np.float64)
    return cfg.regularization * np.maximum(counts, 1).astype(np.float64)


def _gram(factors: np.ndarray, w0: float) -> np.ndarray:
    """``w0 · FᵀF`` in float32 (one BLAS product)."""
    return (np.float32(w0) * (factors.T @ factors)).astype(np.float32)


def _scaled_weights(counts: np.ndarray, exponent: float, norm: float) -> np.ndarray:
    """``n^-e / norm`` per row (1 everywhere when ``e = 0``)."""
    if exponent == 0:
        return np.ones(len(counts), np.float32)
    return (np.maximum(counts, 1).astype(np.float64) ** -exponent / norm).astype(np.float32)


def _side_weights(counts: np.ndarray, exponent: float) -> tuple[np.ndarray, float]:
    """Row weights ``n^-e`` of rows with ``counts`` pairs, scaled to mean 1 over the pairs,
    and the scale used."""
    if exponent == 0 or not counts.sum():
        return np.ones(len(counts), np.float32), 1.0
    raw = _scaled_weights(counts, exponent, 1.0)
    norm = float(np.dot(counts.astype(np.float64), raw) / counts.sum())
    return (raw / norm).astype(np.float32), norm


def _transpose(matrix: sp.csr_array) -> tuple[sp.csr_array, np.ndarray]:
    """The transpose as CSR, and where each of its entries sits in ``matrix.data``.

    Positions travel as the data of an integer copy (1-based, so none is an explicit zero),
    4 bytes each below 2³¹ pairs: this is the fit's memory peak.
    """
    dtype = np.int32 if matrix.nnz < np.iinfo(np.int32).max else np.int64
    carrier = sp.csr_array((np.arange(1, matrix.nnz + 1, dtype=dtype), matrix.indices,
                            matrix.indptr), shape=matrix.shape)
    flipped = sp.csr_array(carrier.T)
    del carrier
    flipped.sort_indices()
    order = flipped.data
    order -= 1
    return sp.csr_array((matrix.data[order], flipped.indices, flipped.indptr),
                        shape=flipped.shape), order

"""Weighted alternating least squares (WALS): user and item embeddings from a sparse matrix.

One model family for both kinds of feedback (see :mod:`recengine.models.kernels` for the
objective):

- ``feedback="implicit"`` (Hu, Koren & Volinsky 2008): every observed pair has preference 1 and
  weight ``w0 + alpha · r · C_i · R_u`` (with ``w0 = 1`` this is the paper's ``c = 1 + α r``);
  every unobserved pair has preference 0 and weight ``w0``.
- ``feedback="explicit"`` (TensorFlow's WALS): observed ratings are the targets with weight
  ``w0 + alpha · C_i · R_u``; unobserved cells pull predictions towards 0 with a small weight
  ``w0``; optional user and item biases around the global mean.

``C_i ∝ n_i^(−item_weight_exponent)`` favours rare items (the course's column weights) and
``R_u ∝ n_u^(−user_weight_exponent)`` tempers prolific users; both are scaled to mean 1 over the
observed pairs so that ``alpha`` keeps its meaning.

Defaults (32 factors, λ = 30, α = 1, 15 CG sweeps) were chosen on validation splits carved from
the training parts of MovieLens 100K, Last.fm 2K and the synthetic rentals (never their test
parts); ``recengine tune`` finds better ones per dataset. For explicit ratings start from
``feedback="explicit", biases=True, scale_regularization=True, unobserved_weight=0.003,
regularization=0.25``. Each sweep solves all users, then all items,
exactly (Cholesky) or by a few warm-started conjugate-gradient steps, in compiled parallel loops.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.errors import DataError, RecengineError
from recengine.models import kernels
from recengine.models.base import ModelConfig, Recommender, check_fitted, top_k
from recengine.progress import ProgressCallback

__all__ = ["WALS", "ModelFitError"]


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

    class Config(ModelConfig):
        factors: int = Field(32, ge=1, description="Embedding size.")
        iterations: int = Field(15, ge=1, description="Sweeps (users, then items).")
        regularization: float = Field(30.0, ge=0, description="L2 weight λ on embeddings.")
        scale_regularization: bool = Field(
            False, description="Multiply λ by each row's number of pairs (ALS-WR, as Spark).")
        feedback: Literal["implicit", "explicit"] = "implicit"
        alpha: float = Field(1.0, ge=0, description="Weight of observed feedback.")
        unobserved_weight: float = Field(
            1.0, ge=0, description="w0: weight pulling unobserved cells to 0 (1 for implicit; "
            "small, e.g. 0.01, for explicit).")
        item_weight_exponent: float = Field(
            0.0, ge=0, description="Item weight C_i ∝ n_i^-e: > 0 favours rare items.")
        user_weight_exponent: float = Field(
            0.0, ge=0, description="User weight R_u ∝ n_u^-e: > 0 tempers prolific users.")
        biases: bool = Field(False, description="Learn user and item biases (explicit only).")
        solver: Literal["cg", "cholesky"] = "cg"
        cg_steps: int = Field(3, ge=1, description="Conjugate-gradient steps per sweep.")
        init_scale: float = Field(0.01, gt=0, description="Std of the random initial factors.")
        similarity: Literal["cosine", "dot"] = Field(
            "cosine", description="How similar items and users are compared.")
        random_state: int = 0
        num_threads: int = Field(0, ge=0, description="0: all cores.")

    state = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "global_mean_",
             "item_weights_", "weight_norms_", "item_gram_", "user_gram_")
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    global_mean_: np.ndarray
    item_weights_: np.ndarray
    #: The means that scaled user and item weights to 1 (new rows are scaled alike).
    weight_norms_: np.ndarray
    #: ``w0 · YᵀY`` and ``w0 · XᵀX``, shared by every fold-in of a user or an item.
    item_gram_: np.ndarray
    user_gram_: np.ndarray

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.config.feedback == "explicit"

    # -- training -----------------------------------------------------------------------------
    def _matrix(self, data: TrainingData) -> sp.csr_array:
        if self.config.feedback == "explicit":
            if not data.has_ratings:
                raise DataError("explicit WALS needs ratings; this data has none "
                                "(use feedback='implicit')")
            return data.ratings
        return data.feedback

    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None:
        cfg = self.config
        if cfg.biases and cfg.feedback != "explicit":
            raise DataError("biases apply to explicit feedback only", column="biases")
        if cfg.num_threads:
            numba.set_num_threads(cfg.num_threads)
        users, items = self._sides(sp.csr_array(self._matrix(data), dtype=np.float32))
        n_users, n_items = len(users.reg), len(items.reg)
        self.global_mean_ = np.asarray(users.values.mean() if cfg.biases else 0.0, np.float32)
        self.user_bias_ = np.zeros(n_users if cfg.biases else 0, np.float32)
        self.item_bias_ = np.zeros(n_items if cfg.biases else 0, np.float32)
        rng = np.random.default_rng(cfg.random_state)
        # Drawn in float32 and scaled in place: a float64 draw of 100,000 × 64 and its scaled
        # copy were the fit's memory peak (100 MB for a 25 MB result).
        X = rng.standard_normal((n_users, cfg.factors), dtype=np.float32)
        Y = rng.standard_normal((n_items, cfg.factors), dtype=np.float32)
        X *= np.float32(cfg.init_scale)
        Y *= np.float32(cfg.init_scale)
        # numba runs the rows in parallel; BLAS inside each thread must not fan out again.
        with threadpool_limits(1, user_api="blas"):
            for sweep in range(cfg.iterations):
                X = self._solve(users, X, Y, solving_users=True)
                Y = self._solve(items, Y, X, solving_users=False)
                if not (np.isfinite(X).all() and np.isfinite(Y).all()):
                    raise ModelFitError(f"factors became non-finite at sweep {sweep + 1}: "
                                        "lower alpha or raise regularization")
                if progress:
                    progress("training wals", sweep + 1, cfg.iterations)
        self._set_factors(X, Y)

    def _set_factors(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Install learned factors and the grams every fold-in shares."""
        self.user_factors_, self.item_factors_ = X, Y
        self.__dict__.pop("_item_norms", None)  # of the previous factors
        self.item_gram_ = _gram(Y, self.config.unobserved_weight)
        self.user_gram_ = _gram(X, self.config.unobserved_weight)

    def _sides(self, matrix: sp.csr_array) -> tuple[_Side, _Side]:
        """Both least-squares problems (users, then items), built once per fit."""
        cfg = self.config
        matrix.sort_indices()
        n_users, n_items = matrix.shape
        self.item_weights_, item_norm = _side_weights(
            np.bincount(matrix.indices, minlength=n_items), cfg.item_weight_exponent,
            matrix.indices)
        rows = np.repeat(np.arange(n_users, dtype=matrix.indices.dtype), np.diff(matrix.indptr))
        user_weights, user_norm = _side_weights(np.diff(matrix.indptr), cfg.user_weight_exponent,
                                                rows)
        self.weight_norms_ = np.array([user_norm, item_norm], np.float64)
        weight = self._pair_weights(matrix.data, self.item_weights_[matrix.indices],
                                    user_weights[rows])
        del rows  # one integer per pair: gone before the transpose, the fit's memory peak
        by_item, order = _transpose(matrix)
        # Implicit targets are all 1: one array serves both sides (both have one entry per pair).
        ones = np.ones_like(matrix.data) if cfg.feedback == "implicit" else None
        return (self._side(matrix, weight, ones),
                self._side(by_item, weight[order], ones))

    def _side(self, matrix: sp.csr_array, weight: np.ndarray, ones: np.ndarray | None) -> _Side:
        """``ones``: the implicit targets; explicit ones are the matrix's values."""
        cfg = self.config
        counts = np.diff(matrix.indptr)
        reg = cfg.regularization * (counts if cfg.scale_regularization else np.ones_like(counts))
        target = matrix.data if ones is None else ones
        return _Side(matrix.indptr, matrix.indices, weight, matrix.data, target,
                     reg.astype(np.float64))

    def _pair_weights(self, values: np.ndarray, item_w: np.ndarray,
                      user_w: np.ndarray) -> np.ndarray:
        cfg = self.config
        strength = values if cfg.feedback == "implicit" else np.ones_like(values)
        return (cfg.unobserved_weight + cfg.alpha * strength * item_w * user_w).astype(
            np.float32)

    def _solve(self, side: _Side, own: np.ndarray, other: np.ndarray,
               *, solving_users: bool) -> np.ndarray:
        """One half-sweep: re-solve ``own`` (users or items) with ``other`` fixed."""
        cfg = self.config
        target = side.target
        if cfg.biases:
            other_bias = self.item_bias_ if solving_users else self.user_bias_
            target = (side.values - self.global_mean_ - other_bias[side.indices]).astype(
                np.float32)
            own, other, gram = self._with_bias_columns(own, other, users=solving_users)
        else:
            gram = _gram(other, cfg.unobserved_weight)
        args = (side.indptr, side.indices, side.weight, target, other, gram, side.reg, own,
                np.float32(cfg.unobserved_weight))
        if cfg.solver == "cholesky":
            kernels.solve_cholesky(*args)
        else:
            kernels.solve_cg(*args, cfg.cg_steps)
        if cfg.biases:
            bias = own[:, -1].copy()
            if solving_users:
                self.user_bias_ = bias
            else:
                self.item_bias_ = bias
            own = np.ascontiguousarray(own[:, :-1])
        return own

    def _with_bias_columns(self, own: np.ndarray, other: np.ndarray,
                           *, users: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append the solved side's bias as an unknown and a constant 1 on the fixed side.

        The unobserved-cell term penalises only the factor part, so the gram is zero-padded.
        """
        own_bias = self.user_bias_ if users else self.item_bias_
        own_aug = np.column_stack([own, own_bias]).astype(np.float32)
        other_aug = np.column_stack([other, np.ones(len(other), np.float32)])
        k = own.shape[1]
        gram = np.zeros((k + 1, k + 1), np.float32)
        gram[:k, :k] = _gram(other, self.config.unobserved_weight)
        return own_aug, np.ascontiguousarray(other_aug), gram

    # -- scoring ------------------------------------------------------------------------------
    def _user_vectors(self, users: np.ndarray, history: sp.csr_array | None) -> np.ndarray:
        """Learned vectors for known users; folded in from ``history`` for the others (-1)."""
        known = users >= 0
        if known.all():
            return self.user_factors_[users]
        assert history is not None, "users given as -1 need a history"
        vectors = np.empty((len(users), self.item_factors_.shape[1]), np.float32)
        vectors[known] = self.user_factors_[users[known]]
        vectors[~known], _ = self._fold_in(history[np.flatnonzero(~known)])
        return vectors

    def _score(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        scores = self._user_vectors(users, history) @ self.item_factors_.T
        if self.config.biases:
            scores += self._offsets(users)[:, None] + self.item_bias_[None, :]
        return scores

    def _offsets(self, users: np.ndarray) -> np.ndarray:
        """Global mean plus user bias (0 for users known only by their history)."""
        user_bias = np.where(users >= 0, self.user_bias_[np.maximum(users, 0)], 0.0)
        return (self.global_mean_ + user_bias).astype(np.float32)

    def _embed(self, users: np.ndarray,
               history: sp.csr_array | None) -> tuple[np.ndarray, np.ndarray]:
        """User vectors (with a 1 that picks up the item bias) and :meth:`_offsets`."""
        vectors = self._user_vectors(users, history)
        if not self.config.biases:
            return vectors, np.zeros(len(users), np.float32)
        ones = np.ones((len(users), 1), np.float32)
        return np.hstack([vectors, ones]), self._offsets(users)

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

    def similar_users(self, users: str | list[str], n: int = 10) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """The ``n`` users with the most similar embeddings, the user excluded."""
        check_fitted(self)
        scalar = isinstance(users, str)
        idx = self.users_.index([users] if scalar else users)
        sims = self._similarity(self.user_factors_[idx], self.user_factors_)
        sims[np.arange(len(idx)), idx] = -np.inf
        top, val = top_k(sims, n)
        ids = self.users_.id_of(top)
        return (ids[0], val[0]) if scalar else (ids, val)

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
        new_w = _scaled_weights(counts, exponent, float(self.weight_norms_[int(not items)]))
        weight = self._pair_weights(history.data, self._existing_weights(items)[history.indices],
                                    new_w[rows])
        target = np.ones(history.nnz, np.float32) if cfg.feedback == "implicit" else (
            history.data - self.global_mean_).astype(np.float32)
        if cfg.biases:
            other_bias = self.user_bias_ if items else self.item_bias_
            target -= other_bias[history.indices]
        reg = cfg.regularization * (counts if cfg.scale_regularization else np.ones_like(counts))
        out = np.zeros((history.shape[0], fixed.shape[1]), np.float32)
        solve = kernels.solve_cholesky if history.shape[0] > 1 else kernels.solve_cholesky_serial
        solve(history.indptr, history.indices, weight, target, fixed, gram,
              reg.astype(np.float64), out, np.float32(cfg.unobserved_weight))
        return out, weight

    def _existing_weights(self, users: bool) -> np.ndarray:
        """Training rows' weights: ``R_u`` per user (if ``users``) or ``C_i`` per item."""
        if not users:
            return self.item_weights_
        counts = np.diff(self.user_items_.indptr)
        return _scaled_weights(counts, self.config.user_weight_exponent,
                               float(self.weight_norms_[0]))

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

    def fold_in(self, history: list[str] | dict[str, float]) -> np.ndarray:
        """The embedding of a user known only by their items (ids, or id → feedback/rating)."""
        vectors, _ = self._fold_in(self.history_row(history))
        return vectors[0]

    def explain_contributions(self, history: list[str] | dict[str, float],
                              item: str) -> dict[str, float]:
        """How much each past item adds to ``item``'s score for a user with this history.

        With ``x = A⁻¹ Σ_j w_j a_j y_j`` (the exact fold-in), the score ``x·y_i`` splits into
        ``Σ_j w_j a_j (y_iᵀ A⁻¹ y_j)``: one term per past item, adding up to the score's
        factor part (biases, if any, are the rest).
        """
        row = self.history_row(history)
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
        reg = cfg.regularization * (counts if cfg.scale_regularization else 1)
        A = (self.item_gram_ + reg * np.eye(Y.shape[1])
             + (past * (weight - cfg.unobserved_weight)[:, None]).T @ past)
        if cfg.feedback == "implicit":
            target = np.ones(row.nnz)
        else:
            target = row.data - float(self.global_mean_) - (
                self.item_bias_[row.indices] if cfg.biases else 0.0)
        solved = np.linalg.solve(A, Y[np.asarray(items)].T)  # [factors, len(items)]
        return (weight * target)[None, :] * (past @ solved).T

    def _explain(self, user: int, history: sp.csr_array, items: np.ndarray) -> list[str]:
        row = sp.csr_array(history, dtype=np.float32)
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


def _gram(factors: np.ndarray, w0: float) -> np.ndarray:
    """``w0 · FᵀF`` in float32 (one BLAS product)."""
    return (np.float32(w0) * (factors.T @ factors)).astype(np.float32)


def _scaled_weights(counts: np.ndarray, exponent: float, norm: float) -> np.ndarray:
    """``n^-e / norm`` per row (1 everywhere when ``e = 0``)."""
    if exponent == 0:
        return np.ones(len(counts), np.float32)
    return (np.maximum(counts, 1).astype(np.float64) ** -exponent / norm).astype(np.float32)


def _side_weights(counts: np.ndarray, exponent: float,
                  pair_rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Row weights ``n^-e`` scaled to mean 1 over the observed pairs, and the scale used."""
    if exponent == 0:
        return np.ones(len(counts), np.float32), 1.0
    raw = _scaled_weights(counts, exponent, 1.0)
    norm = float(raw[pair_rows].mean()) if len(pair_rows) else 1.0
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

"""EASE: the closed-form item-to-item model (Steck 2019, "Embarrassingly Shallow Autoencoders").

It learns the item × item matrix ``B`` that best rebuilds each user's history from the rest of
it, ``min ‖X − XB‖² + λ‖B‖²`` with ``diag(B) = 0`` (an item may not predict itself), and the
constrained least squares has an exact answer::

    G = XᵀX + λI,   P = G⁻¹,   B = −P / diag(P) (column j divided by −P_jj),   diag(B) = 0

One Cholesky inverse, no iterations, no seed: the same data always gives the same ``B``.
Scores are ``x_u B`` (:class:`~recengine.models.item_item.ItemToItem`), read from the query's
history at request time: a new user, an anonymous session or an event posted a moment ago is
scored without refitting. Unlike a neighbourhood model, ``B`` has negative weights (items that
rarely go together push each other down), which is much of why it ranks so well; on MovieLens
100K it is the strongest single model in published comparisons.

``λ`` (``l2``) is the main hyper-parameter: larger shrinks ``B`` towards the co-occurrence counts
(``λ·B → XᵀX`` off the diagonal as ``λ → ∞``), smaller trusts rare co-occurrences more. Two
published refinements and two weightings keep the closed form, each plain EASE at 0 and
searched by the tuner; the two weightings are on by default (below):

- ``dropout`` ``p`` (Steck 2020, "Autoencoders that don't overfit towards the identity", EDLAE):
  training on inputs with each item dropped with probability ``p`` (the kept ones scaled by
  ``1/(1−p)``), and scoring only the dropped items (full emphasis), has in expectation (up to
  the factor ``p``) the objective ``‖X − XB‖² + ‖Λ^½ B‖²`` with ``diag(B) = 0`` and the penalty
  ``Λ = λI + p/(1−p)·dMat(diag(XᵀX))``: the same closed form with ``Λ`` in place of ``λI``.
  An item the history holds often is penalised in proportion to how often, so its weights
  are shrunk more than a rare one's; ``p = 0`` is plain EASE, bit for bit.
- ``popularity_exponent`` ``β``: the columns of ``X`` are scaled by ``s_j = (XᵀX)_jj^−β`` (the
  item's number of users for binary data) before the closed form, and the history by the
  same ``s`` when scoring, so ``W = dMat(s)·B̃``. Each item's score then estimates its scaled
  entry ``x_j·s_j``, so it carries the factor ``s_j``: popularity to the power −β, the penalty
  RP3β (Paudel et al. 2017) puts on its random walk's last step; in the fit, a popular history
  item's weights are penalised more (by ``λ/s_i²`` in unscaled units), as with dropout. At
  ``β = ½`` the model is fitted on the cosine matrix (unit diagonal). ``s`` is scaled so that
  ``trace(XᵀX)`` is unchanged, so ``λ`` keeps its size.
- ``user_weight_exponent`` ``γ``: user ``u``'s squared errors weigh ``d_u ∝ ‖x_u‖^−2γ`` (the
  number of items they chose, ``n_u^−γ``, for binary data), so ``G = XᵀDX``: a heavy user's
  many co-occurrences count for less, as inverse user frequency does in item-kNN and BM25's
  length normalisation, and as WALS's ``user_weight_exponent`` does. It is the same closed form
  on ``D^½X`` (``d`` scaled to keep ``trace(XᵀX)``, so ``λ`` keeps its size); with ``β`` the
  columns are scaled by the weighted ``G_jj``. Scores are unchanged in form: a user's own weight
  multiplies all their scores alike, so the history is not weighted. On MovieLens 100K it helps
  with ``β`` more than alone (docs/benchmarks.md).

Defaults: λ = 800, ``γ`` = 0.75, ``β`` = 0.2, no dropout, chosen on the validation carves of
the training parts (never the test parts) of MovieLens 100K and latest-small, where they beat
plain EASE at λ = 500 by 3.4 % and 5.3 % in nDCG@10 (0.2848 against 0.2754, 0.2230 against
0.2118; docs/benchmarks.md, "EASE's user weighting"). Dropout's gains there were within the
carves' noise, so it stays off.

Memory is the price: ``B`` is dense, ``n_items²`` float32 (4 GB at 32,000 items), and training
holds ``XᵀX`` and its inverse in float64 besides, about ``12 · n_items²`` bytes at its peak.
Catalogues above ``max_items`` are refused with a :class:`~recengine.errors.DataError` before any
of it is allocated: for a large catalogue use ``item-knn``, which keeps a few neighbours per item.

Saved as one array, ``B`` in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Shape, TrainingOptions
from recengine.models.item_item import ItemItemConfig, ItemToItem, interactions
from recengine.progress import ProgressCallback

__all__ = ["EASE"]

#: Above this many items the inverse runs on one thread: scipy 1.17's bundled OpenBLAS crashes
#: the process (SIGSEGV) in its threaded Cholesky from about 16,000 items (seen at 16,000 and at
#: Last.fm's 17,632, not at 15,000); one thread inverts 16,400 items without it.
THREADED_MAX_ITEMS = 15_000

#: Bytes per ``n_items²`` at the peak of training: ``G`` in float64 (inverted in place), then
#: ``B`` in float32 beside it.
_PEAK_BYTES = 12


class EASE(ItemToItem):
    """Closed-form item-to-item weights ``B`` (Steck 2019); scores are ``history @ B``.

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": ["u", "u", "v", "v", "w"],
    ...                       "item_id": ["a", "b", "a", "b", "c"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> model = EASE(l2=1.0).fit(TrainingData.from_interactions(pairs))
    >>> model.recommend_history(["a"], n=2)[0].tolist()  # b always came with a
    ['b', 'c']
    >>> model.explain_history(["a", "c"], ["b"])
    ['because you chose a']
    >>> EASE(max_items=2).fit(TrainingData.from_interactions(pairs))
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: column 'max_items': ease keeps an items × items matrix: 3 items \
need under 0.1 GB to train, over max_items=2; raise max_items if the memory is there, or use \
item-knn (a few neighbours per item)
    """

    name = "ease"

    class Config(ItemItemConfig):
        l2: float = Field(
            800.0, gt=0, description="λ: the L2 penalty on B. Larger shrinks B towards "
            "co-occurrence counts; smaller trusts rare co-occurrences more.")
        dropout: float = Field(
            0.0, ge=0, lt=1, description="p: emphasised dropout (EDLAE, Steck 2020), in "
            "closed form: item i's weights get the extra penalty p/(1−p)·(XᵀX)_ii, so items "
            "seen often are shrunk more. 0 is plain EASE.")
        popularity_exponent: float = Field(
            0.2, ge=0, le=1, description="β: scale item j's column of X (and of the history) by "
            "(XᵀX)_jj^−β, its user count for binary data, before the closed form: popular "
            "items' scores are divided by their popularity^β. 0 is plain EASE, ½ fits the "
            "cosine matrix.")
        user_weight_exponent: float = Field(
            0.75, ge=0, le=2, description="γ: weigh each user's squared errors by n_u^−γ "
            "(‖x_u‖^−2γ for weighted feedback), so XᵀX becomes XᵀDX and heavy users' "
            "co-occurrences count for less. 0 is plain EASE.")
        max_items: int = Field(
            20_000, ge=1, description="Refuse catalogues larger than this: training needs "
            "about 12 · n_items² bytes (4.8 GB at 20,000 items), B keeps 4 · n_items².")

    config: Config

    state = ("weights_",)
    #: ``B``: what each history item (row) adds to each item's score (column); 0 diagonal.
    weights_: np.ndarray

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        """λ on a log scale; ten times higher with feedback weights, which scale ``XᵀX`` by
        their square (stars: about 13 times on MovieLens). Dropout up to 0.9 (an extra penalty
        of up to 9·(XᵀX)_ii) and the popularity exponent up to ½, the cosine's normalisation,
        both from 0, plain EASE. Beyond ½ rare items' columns outweigh popular ones': in a
        first search over [0, 1] (MovieLens 100K, docs/benchmarks.md) the 8 draws of 20 above
        0.35 all scored far below plain EASE, budget lost. The user weight exponent up to 1
        (``1/n_u``: every user's errors weigh the same in all); the validation carve's best
        were at 0.5–0.9."""
        high = 1e4 if fixed.get("binary", True) else 1e5
        return {"l2": ("float", high / 1e4, high, True), "dropout": ("float", 0.0, 0.9, False),
                "popularity_exponent": ("float", 0.0, 0.5, False),
                "user_weight_exponent": ("float", 0.0, 1.0, False)}

    def state_shapes(self) -> dict[str, Shape]:
        return {"weights_": ("items", "items")}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        n_items = data.n_items
        if n_items > self.config.max_items:
            raise DataError(
                f"ease keeps an items × items matrix: {n_items} items need "
                f"{_gigabytes(_PEAK_BYTES * n_items ** 2)} to train, over "
                f"max_items={self.config.max_items}; raise max_items if the memory is there, "
                "or use item-knn (a few neighbours per item)", column="max_items")
        cfg = self.config
        return {"weights_": closed_form(interactions(data.feedback, cfg.binary), cfg.l2,
                                        dropout=cfg.dropout,
                                        popularity_exponent=cfg.popularity_exponent,
                                        user_weight_exponent=cfg.user_weight_exponent)}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"weights_": np.ascontiguousarray(arrays["weights_"], dtype=np.float32)}

    def _item_weights(self) -> np.ndarray:
        return self.weights_


def _gigabytes(n_bytes: int) -> str:
    return f"about {n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else "under 0.1 GB"


def closed_form(X: Any, l2: float, *, dropout: float = 0.0, popularity_exponent: float = 0.0,
                user_weight_exponent: float = 0.0) -> np.ndarray:
    """EASE's ``B`` for the user × item matrix ``X`` (sparse or dense), in float32: with
    the three options at 0, ``P = (XᵀX + λI)⁻¹``, ``B = −P / diag(P)``; otherwise the variants
    of the module's docstring, which change only the Gram matrix, its diagonal penalty and the
    rows of the result (no extra ``n_items²`` array).

    >>> B = closed_form(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]), l2=1.0)
    >>> np.diag(B).tolist(), round(float(B[0, 1]), 4)  # −P₀₁ / P₁₁ = 0.25 / 0.625
    ([0.0, 0.0, 0.0], 0.4)
    """
    users = (_trace_keeping_scale(_row_norms(X), user_weight_exponent / 2)
             if user_weight_exponent else None)
    if users is not None:  # D^½X, in float64: the weighted Gram's sums are not integers
        X = sp.diags_array(users) @ sp.csr_array(X)
    gram = X.T @ X
    G = np.array(gram.toarray() if hasattr(gram, "toarray") else gram, dtype=np.float64)
    scale = _trace_keeping_scale(np.diag(G), popularity_exponent)
    if scale is not None:  # G of X·dMat(s), in place
        G *= scale[:, None]
        G *= scale[None, :]
    G[np.diag_indices_from(G)] += l2 + dropout / (1.0 - dropout) * np.diag(G)
    with threadpool_limits(1 if len(G) > THREADED_MAX_ITEMS else None, user_api="blas"):
        P = scipy.linalg.inv(G, overwrite_a=True, check_finite=False, assume_a="pos")
    P /= -np.diag(P)[None, :]  # column j divided by −P_jj
    np.fill_diagonal(P, 0.0)
    if scale is not None:  # the history is scaled too: W = dMat(s)·B̃
        P *= scale[:, None]
    return np.ascontiguousarray(P, dtype=np.float32)  # LAPACK's is column-major: scoring reads rows


def _row_norms(X: Any) -> np.ndarray:
    """``‖x_u‖²`` of each row of ``X``: its number of items when binary."""
    squares = X.multiply(X) if sp.issparse(X) else np.square(X)
    return np.asarray(squares.sum(axis=1), dtype=np.float64).ravel()


def _trace_keeping_scale(norms: np.ndarray, exponent: float) -> np.ndarray | None:
    """``s_j ∝ norms_j^−exponent`` for the columns (or rows) of ``X`` with squared norms
    ``norms``, with ``Σ s_j² norms_j = Σ norms_j`` (the scaled Gram matrix keeps its trace, so
    λ keeps its size); None for ``exponent = 0``. Empty columns (rows) keep 1: they are zero
    either way."""
    if exponent == 0:
        return None
    chosen = norms > 0
    scale = np.ones_like(norms)
    if chosen.any():
        scale[chosen] = norms[chosen] ** -exponent
        scale *= np.sqrt(norms.sum() / (scale ** 2 * norms).sum())
    return scale

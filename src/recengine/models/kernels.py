"""Compiled hot loops (numba), each with a plain-NumPy twin that tests check it against.

Weighted least squares for one side of a factorisation, every row in parallel. For row ``u``
with observed columns ``i`` (CSR), weights ``w_ui``, targets ``a_ui`` and fixed factors ``Y``:

    minimise  Σ_i w_ui (a_ui − x_u·y_i)² + w0 Σ_{i unobserved} (x_u·y_i)² + λ_u ‖x_u‖²

whose normal equations are ``(gram + Σ_i (w_ui − w0) y_i y_iᵀ + λ_u I) x_u = Σ_i w_ui a_ui y_i``
with ``gram = w0 · YᵀY``. Hu, Koren & Volinsky's implicit ALS is ``w0 = 1, w = 1 + α r, a = 1``;
TensorFlow's WALS is a small ``w0`` and ``a`` the rating. Rows are independent, so the result
does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "select_top_k",
    "select_top_k_numpy",
    "select_top_k_serial",
    "solve_cg",
    "solve_cg_numpy",
    "solve_cholesky",
    "solve_cholesky_numpy",
    "solve_cholesky_serial",
]

_EPS = 1e-20


def _solve_cholesky(indptr, indices, weight, target, Y, gram, reg, X, w0):  # pragma: no cover
    """Exact solve of every row's normal equations (Cholesky), written into ``X``."""
    n_rows, k = X.shape
    for u in prange(n_rows):
        A = gram.astype(np.float64)
        b = np.zeros(k, dtype=np.float64)
        for j in range(k):
            A[j, j] += reg[u]
        for p in range(indptr[u], indptr[u + 1]):
            i = indices[p]
            w = weight[p]
            extra = w - w0
            wa = w * target[p]
            for a in range(k):
                ya = Y[i, a]
                b[a] += wa * ya
                ea = extra * ya
                for c in range(a + 1):
                    A[a, c] += ea * Y[i, c]
        for a in range(k):
            for c in range(a):
                A[c, a] = A[a, c]
        X[u] = np.linalg.solve(A, b).astype(X.dtype)


#: All rows in parallel (training).
solve_cholesky = njit(parallel=True, fastmath=True, cache=True)(_solve_cholesky)
#: The same code on one thread: a single fold-in should not wake a thread pool.
solve_cholesky_serial = njit(fastmath=True, cache=True)(_solve_cholesky)


#: Rows solved together in :func:`solve_cg`: their ``gram`` products are one matrix product.
CG_BLOCK = 64


@njit(parallel=True, fastmath=True, cache=True)
def solve_cg(indptr, indices, weight, target, Y, gram, reg, X, w0, steps):  # pragma: no cover
    """A few conjugate-gradient steps per row, warm-started from ``X``, written into ``X``.

    ``A·d`` is formed without building ``A``: ``gram·d + λ d + Σ_i (w_ui − w0) (y_i·d) y_i``.
    Rows run in blocks of :data:`CG_BLOCK` in lockstep, so the ``gram`` term of a whole block is
    one BLAS matrix product (the costly part when the factors are many); each row's own
    arithmetic is unchanged, so the result equals row-by-row CG.
    """
    n_rows, k = X.shape
    n_blocks = (n_rows + CG_BLOCK - 1) // CG_BLOCK
    G = gram.astype(np.float32)
    for blk in prange(n_blocks):
        u0 = blk * CG_BLOCK
        u1 = min(u0 + CG_BLOCK, n_rows)
        x = X[u0:u1].copy()
        r = -(x @ G)
        for b in range(u1 - u0):
            u = u0 + b
            lam = np.float32(reg[u])
            for a in range(k):
                r[b, a] -= lam * x[b, a]
            for p in range(indptr[u], indptr[u + 1]):
                i = indices[p]
                yx = np.float32(0.0)
                for a in range(k):
                    yx += Y[i, a] * x[b, a]
                coef = weight[p] * target[p] - (weight[p] - w0) * yx
                for a in range(k):
                    r[b, a] += coef * Y[i, a]
        d = r.copy()
        rs_old = np.zeros(u1 - u0, dtype=np.float64)
        active = np.zeros(u1 - u0, dtype=np.bool_)
        for b in range(u1 - u0):
            rs = 0.0
            for a in range(k):
                rs += r[b, a] * r[b, a]
            rs_old[b] = rs
            active[b] = rs >= _EPS
        for _ in range(steps):
            Ad = d @ G
            for b in range(u1 - u0):
                if not active[b]:
                    continue
                u = u0 + b
                lam = np.float32(reg[u])
                for a in range(k):
                    Ad[b, a] += lam * d[b, a]
                for p in range(indptr[u], indptr[u + 1]):
                    i = indices[p]
                    yd = np.float32(0.0)
                    for a in range(k):
                        yd += Y[i, a] * d[b, a]
                    coef = (weight[p] - w0) * yd
                    for a in range(k):
                        Ad[b, a] += coef * Y[i, a]
                dAd = 0.0
                for a in range(k):
                    dAd += d[b, a] * Ad[b, a]
                if dAd <= 0.0:
                    active[b] = False
                    continue
                step = rs_old[b] / dAd
                rs_new = 0.0
                for a in range(k):
                    x[b, a] += step * d[b, a]
                    r[b, a] -= step * Ad[b, a]
                    rs_new += r[b, a] * r[b, a]
                if rs_new < _EPS:
                    active[b] = False
                    continue
                beta = rs_new / rs_old[b]
                for a in range(k):
                    d[b, a] = r[b, a] + beta * d[b, a]
                rs_old[b] = rs_new
        X[u0:u1] = x


def _normal_equations(indptr, indices, weight, target, Y, gram, reg, w0, u):
    rows = indices[indptr[u]:indptr[u + 1]]
    w = weight[indptr[u]:indptr[u + 1]].astype(np.float64)
    a = target[indptr[u]:indptr[u + 1]].astype(np.float64)
    Yu = Y[rows].astype(np.float64)
    A = gram + reg[u] * np.eye(len(gram)) + (Yu * (w - w0)[:, None]).T @ Yu
    return A, Yu.T @ (w * a)


def solve_cholesky_numpy(indptr, indices, weight, target, Y, gram, reg, X, w0):
    """Twin of :func:`solve_cholesky`, row by row in NumPy."""
    for u in range(X.shape[0]):
        A, b = _normal_equations(indptr, indices, weight, target, Y, gram, reg, w0, u)
        X[u] = np.linalg.solve(A, b)


def solve_cg_numpy(indptr, indices, weight, target, Y, gram, reg, X, w0, steps):
    """Twin of :func:`solve_cg`, row by row in NumPy."""
    for u in range(X.shape[0]):
        A, b = _normal_equations(indptr, indices, weight, target, Y, gram, reg, w0, u)
        x = X[u].astype(np.float64)
        r = b - A @ x
        d = r.copy()
        rs_old = r @ r
        if rs_old < _EPS:
            continue
        for _ in range(steps):
            Ad = A @ d
            dAd = d @ Ad
            if dAd <= 0:
                break
            step = rs_old / dAd
            x += step * d
            r -= step * Ad
            rs_new = r @ r
            if rs_new < _EPS:
                break
            d = r + (rs_new / rs_old) * d
            rs_old = rs_new
        X[u] = x


@njit(cache=True, inline="always")
def _worse(value_a, index_a, value_b, index_b):  # pragma: no cover
    """Whether entry a ranks below entry b: a lower score, or the same at a higher index."""
    return value_a < value_b or (value_a == value_b and index_a > index_b)


@njit(cache=True)
def _sift_down(values, indices, size, value, index):  # pragma: no cover
    """Place (``value``, ``index``) at the root of the heap of ``size`` entries (the worst
    entry at the root) and move it down to where it belongs."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(values[child + 1], indices[child + 1], values[child],
                                       indices[child]):
            child += 1
        if not _worse(values[child], indices[child], value, index):
            break
        values[pos] = values[child]
        indices[pos] = indices[child]
        pos = child
    values[pos] = value
    indices[pos] = index


@njit(cache=True)
def _offer(values, indices, filled, k, value, index):  # pragma: no cover
    """Put (``value``, ``index``), the highest index so far, in the heap of the best ``k``
    (``filled`` of them so far): offered only while the heap is filling or when it beats the
    heap's worst. Returns how many the heap holds after."""
    if filled < k:  # sift up: the worse entry goes to the root
        pos = filled
        while pos > 0:
            parent = (pos - 1) // 2
            if not _worse(value, index, values[parent], indices[parent]):
                break
            values[pos] = values[parent]
            indices[pos] = indices[parent]
            pos = parent
        values[pos] = value
        indices[pos] = index
        return filled + 1
    _sift_down(values, indices, k, value, index)
    return filled


def _select_top_k(scores, k, out_idx, out_val):  # pragma: no cover
    """The ``k`` largest finite scores per row, best first, ties to the lower index.

    A heap of the best ``k`` so far, the worst of them at its root, fed in one pass over the
    row; first, the best ``k`` of an evenly spaced sample of the row give a floor that the
    row's best ``k`` cannot be below, so that only the scores above it reach the heap,
    whatever order the row is in. A sample of every ``s``-th score keeps about ``k s`` scores
    above its floor: ``s = √(n / k)`` feeds the heap fewest in all, about ``2 √(n k)``. (A
    sorted buffer fed every score took 6 ms at 100,000 items and ``k`` 100 for a row
    ascending with the item index, as popularity is where new items sell most, against 0.2
    ms for a shuffled one.) Unfilled slots stay -1 / NaN.
    """
    n_rows, n_cols = scores.shape
    if k == 0:
        return
    # A sample pays where it leaves most of a long row out; short rows go straight through.
    stride = int(np.sqrt(n_cols / k)) if n_cols >= _SAMPLED_ROW * k else 0
    for r in prange(n_rows):
        values = out_val[r]  # the heap lives in the row's output until it is sorted there
        indices = out_idx[r]
        floor = -np.inf
        filled = 0
        if stride >= 2:
            for j in range(0, n_cols, stride):
                v = scores[r, j]
                if np.isfinite(v) and (filled < k or v > values[0]):
                    filled = _offer(values, indices, filled, k, v, j)
            if filled == k:
                floor = values[0]
            filled = 0
        for j in range(n_cols):
            v = scores[r, j]
            # Most scores stop here: below the floor (NaN too) or not above the heap's worst
            # (the same score at a later index ranks below it).
            if v >= floor and np.isfinite(v) and (filled < k or v > values[0]):
                filled = _offer(values, indices, filled, k, v, j)
        for c in range(filled - 1, 0, -1):  # heapsort: the worst left goes to the last slot
            value, index = values[c], indices[c]
            values[c], indices[c] = values[0], indices[0]
            _sift_down(values, indices, c, value, index)
        for c in range(filled, k):
            indices[c] = -1
            values[c] = np.nan


#: Rows at least this many times ``k`` long are sampled for a floor first.
_SAMPLED_ROW = 64


#: Rows in parallel (evaluation, batch recommendation).
select_top_k = njit(parallel=True, cache=True)(_select_top_k)
#: The same code on one thread: waking the pool costs more than one row (a server request).
select_top_k_serial = njit(cache=True)(_select_top_k)


def select_top_k_numpy(scores, k, out_idx, out_val):
    """Twin of :func:`select_top_k` with a stable sort per row."""
    for r in range(scores.shape[0]):
        finite = np.flatnonzero(np.isfinite(scores[r]))
        order = finite[np.argsort(-scores[r, finite], kind="stable")][:k]
        out_idx[r] = -1
        out_val[r] = np.nan
        out_idx[r, :len(order)] = order
        out_val[r, :len(order)] = scores[r, order]

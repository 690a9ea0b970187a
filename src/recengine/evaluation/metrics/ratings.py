"""Rating accuracy: :func:`rmse` and :func:`mae` over (predicted, actual) rating pairs.

Apart from the ranking metrics because they read predicted ratings, not ranked lists, and
give one number for the whole batch rather than one per user.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "rmse"]


def _check_pairs(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if p.shape != a.shape:
        raise ValueError(f"{len(p)} predictions for {len(a)} ratings: pass one prediction per "
                         f"rating")
    return p, a


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error, sqrt(mean((predicted − actual)²)), over rating pairs.

    Pass only the pairs the model predicted: a NaN prediction makes the result NaN. No pairs
    give NaN. Lengths that differ raise ``ValueError``.

    Examples
    --------
    >>> rmse([3.0, 4.0], [4.0, 4.0])
    0.7071067811865476
    """
    p, a = _check_pairs(predicted, actual)
    return float(np.sqrt(np.mean((p - a) ** 2))) if len(p) else float("nan")


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error, mean(|predicted − actual|), over rating pairs.

    Same input rules as :func:`rmse`.

    Examples
    --------
    >>> mae([3.0, 4.5], [4.0, 4.0])
    0.75
    """
    p, a = _check_pairs(predicted, actual)
    return float(np.mean(np.abs(p - a))) if len(p) else float("nan")

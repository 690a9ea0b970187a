"""Is one model's lead real? A paired bootstrap over the test users.

Two models scored on the same users differ by a per-user amount; its mean is the lead the
tables show. Which users happened to be in the test part moves that mean, and on a few hundred
users (MovieLens 100K has 943) by more than many published leads. Resampling the users with
replacement, the pair's scores together, gives the spread of the mean difference that a
different draw of users would have shown: a percentile interval and the share of draws where
the lead is gone. Paired, because the models answer the same users: a user every model serves
badly moves both scores and not the difference.

>>> import numpy as np
>>> a = np.array([0.5, 0.6, 0.4, 0.7, 0.5, 0.6, 0.5, 0.4])
>>> d = paired_bootstrap(a, a - 0.1)  # b is a, every user 0.1 worse
>>> round(d.mean, 4), round(d.low, 4), round(d.high, 4), d.share_not_ahead
(0.1, 0.1, 0.1, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PairedDifference", "paired_bootstrap"]


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` over the users both scored: its mean, a bootstrap interval at ``level``, and
    the share of resamples where ``a`` is not ahead (the mean difference ≤ 0)."""

    mean: float
    low: float
    high: float
    share_not_ahead: float
    users: int
    level: float

    def to_dict(self) -> dict[str, float | int]:
        return {"difference": self.mean, "low": self.low, "high": self.high,
                "share_not_ahead": self.share_not_ahead, "users": self.users,
                "level": self.level}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, draws: int = 2000,
                     level: float = 0.95, seed: int = 0) -> PairedDifference:
    """The mean of ``a − b`` (per-user values of one metric, same users, same order) and its
    percentile interval from ``draws`` resamples of the users; users NaN in either are left
    out, as the metrics' means leave them out.

    Seeded, so the same scores give the same interval. 2,000 draws place a 95 % interval's
    ends to within a few percent of its width, at a cost linear in draws × users.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"per-user values of the same users expected, got shapes {a.shape} "
                         f"and {b.shape}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie between 0 and 1, got {level}")
    diff = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if not len(diff):
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, 0, level)
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    block = max(1, 10_000_000 // len(diff))  # resamples at a time: at most 10⁷ draws in memory
    for start in range(0, draws, block):
        stop = min(start + block, draws)
        means[start:stop] = diff[rng.integers(0, len(diff), (stop - start, len(diff)))].mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high),
                            float((means <= 0).mean()), len(diff), level)

"""User groups for breaking results down: :func:`activity_groups` (light / medium / heavy).

Not a metric: the evaluator averages each per-user metric overall and within these groups, to
show how a model serves users with short and long histories.
"""

from __future__ import annotations

import numpy as np

__all__ = ["activity_groups"]

_GROUPS = np.array(["light", "medium", "heavy"])


def activity_groups(train_counts: np.ndarray) -> np.ndarray:
    """Each user's activity group, ``"light"``, ``"medium"`` or ``"heavy"``, by profile size.

    With q1 and q2 the 1/3 and 2/3 quantiles of ``train_counts`` (training items per user,
    numpy's default linear interpolation): light is count ≤ q1, medium q1 < count ≤ q2, heavy
    count > q2. Users tied on a boundary all go to the lower group, so with many ties (MovieLens
    users all have at least 20 ratings) the groups are uneven, and when q1 == q2 nobody is
    medium. Returns a numpy str array.

    Examples
    --------
    >>> activity_groups(np.array([1, 2, 3, 4, 5, 6])).tolist()
    ['light', 'light', 'medium', 'medium', 'heavy', 'heavy']
    >>> activity_groups(np.array([5, 5, 5, 5, 9])).tolist()
    ['light', 'light', 'light', 'light', 'heavy']
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"train_counts must be 1-D (one count per user), got {counts.shape}")
    if not len(counts):
        return _GROUPS[:0].copy()
    low, high = np.quantile(counts, [1 / 3, 2 / 3])
    return _GROUPS[(counts > low).astype(np.intp) + (counts > high)]

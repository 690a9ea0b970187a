"""Relaxation: which requirements to drop when a conjunction of requirements matches no item.

The classic knowledge-based answer to "no results": :func:`relax` tries dropping one requirement
at a time first, then pairs, and says how many items each choice would bring back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from recengine.models.constraints.catalog import Catalog, _all_of
from recengine.models.constraints.nodes import And, Constraint, _joined, conjuncts
from recengine.models.constraints.parse import parse_constraint


@dataclass(frozen=True)
class Relaxation:
    """One way out of an empty result: drop ``dropped`` (string forms), get ``count`` items.

    ``constraint`` is what remains of the requirements (None when nothing remains).
    """

    dropped: tuple[str, ...]
    count: int
    constraint: Constraint | None


def relax(catalog: Catalog, constraint: Constraint | str | Mapping[str, Any], *,
          max_dropped: int = 2) -> list[Relaxation]:
    """Which requirements to drop when ``constraint`` matches no item: the classic relaxation.

    The requirements are the parts of the (possibly nested) conjunction; an ``or`` or a ``not``
    counts as one. Dropping one requirement is tried first; only if no single drop brings any
    item back are pairs tried, and so on up to ``max_dropped``. The answers that return items
    come sorted by how many (most first; ties keep the order of the requirements). Nothing needs
    relaxing, and the answer is empty, when the constraint already matches an item.

    >>> import pandas as pd
    >>> items = pd.DataFrame({"bedrooms": [1, 3, 4], "price": [80, 150, 300]})
    >>> catalog = Catalog(items, {"bedrooms": "numeric", "price": "numeric"})
    >>> [(r.dropped, r.count) for r in relax(catalog, "bedrooms >= 4 and price <= 200")]
    [(('bedrooms >= 4',), 2), (('price <= 200',), 1)]
    """
    parts = conjuncts(parse_constraint(constraint))
    masks = [catalog._eval(p) for p in parts]
    if _all_of(masks, catalog.n_items).any():
        return []
    for size in range(1, min(max_dropped, len(parts)) + 1):
        found = []
        for dropped in combinations(range(len(parts)), size):
            kept = [k for k in range(len(parts)) if k not in dropped]
            count = int(np.count_nonzero(_all_of([masks[k] for k in kept], catalog.n_items)))
            if count:
                found.append(Relaxation(tuple(str(parts[k]) for k in dropped), count,
                                        _joined(And, [parts[k] for k in kept]) if kept
                                        else None))
        if found:
            return sorted(found, key=lambda r: -r.count)
    return []

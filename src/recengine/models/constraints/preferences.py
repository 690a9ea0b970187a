"""Soft constraints: weighted preferences, their printed forms, and scoring.

An item scores Σ weight · [it matches]; negative weights penalise. :func:`.parse.parse_preferences`
reads both forms, :meth:`.catalog.Catalog.preference_scores` scores a whole catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recengine.models.constraints.nodes import Constraint, _literal, constraint_to_json


@dataclass(frozen=True)
class Preference:
    """A soft constraint: matching items score ``weight`` (negative weights penalise)."""

    constraint: Constraint
    weight: float = 1.0


def preferences_to_string(preferences: Sequence[Preference]) -> str:
    """The string form of weighted preferences (``prefer w: constraint; ...``)."""
    return "prefer " + "; ".join(f"{_literal(p.weight)}: {p.constraint}" for p in preferences)


def preferences_to_json(preferences: Sequence[Preference]) -> dict[str, Any]:
    """The JSON form of weighted preferences: ``{"prefer": [{"weight", "constraint"}, ...]}``."""
    return {"prefer": [{"weight": p.weight, "constraint": constraint_to_json(p.constraint)}
                       for p in preferences]}


def weigh_matches(preferences: Sequence[Preference], matches: np.ndarray) -> np.ndarray:
    """Σ weight · match per item, from :meth:`Catalog.preference_matches`'s boolean matrix."""
    weights = np.array([p.weight for p in preferences], dtype=np.float32)
    return (weights @ matches.astype(np.float32)).astype(np.float32)


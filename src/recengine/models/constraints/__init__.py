"""A small, safe language for what a user requires and prefers of an item, and its evaluation.

Why: knowledge-based recommendation starts from stated needs ("3 bedrooms, at most 200 a night,
pets allowed, near the lake"), not from history. The same need arrives from the API as JSON and
from the command line as one line of text, so both surface forms parse to one AST of frozen
dataclasses and print back from it: AST → JSON → AST and AST → string → AST give the same AST.
Nothing is ever evaluated as Python: the string form has its own tokenizer and recursive-descent
parser, the JSON form is walked node by node, and every error is a
:class:`~recengine.errors.DataError` that names the character offset (with a caret under it) or
the JSON path (``and[2].op``).

Soft constraints are weighted preferences: an item scores Σ weight · [it matches]. Relaxation is
the classic knowledge-based answer to "no results": when a conjunction of requirements matches
nothing, :func:`relax` says which requirements to drop, one at a time first, then in pairs, and
how many items each choice would bring back.

Layout, each module importing only those above it:

- :mod:`.tokens`: the lexical rules of the string form and its tokenizer.
- :mod:`.nodes`: the AST (:class:`Compare`, :class:`And`, ...) and its printers
  (:func:`constraint_to_string`, :func:`constraint_to_json`, :func:`describe`).
- :mod:`.preferences`: :class:`Preference`, its printed forms, and :func:`weigh_matches`.
- :mod:`.parse`: :func:`parse_constraint` and :func:`parse_preferences`, with the grammar.
- :mod:`.catalog`: :class:`Catalog`, which evaluates a constraint into a mask over the items,
  and what each test means on each kind of field.
- :mod:`.relaxation`: :func:`relax` and :class:`Relaxation`.
"""

from __future__ import annotations

from recengine.models.constraints.catalog import Catalog, haversine_km
from recengine.models.constraints.nodes import (
    And,
    Between,
    Compare,
    Constraint,
    Contains,
    Has,
    In,
    Near,
    Not,
    Or,
    conjuncts,
    constraint_to_json,
    constraint_to_string,
    describe,
)
from recengine.models.constraints.parse import MAX_DEPTH, parse_constraint, parse_preferences
from recengine.models.constraints.preferences import (
    Preference,
    preferences_to_json,
    preferences_to_string,
    weigh_matches,
)
from recengine.models.constraints.relaxation import Relaxation, relax

__all__ = [
    "MAX_DEPTH",
    "And",
    "Between",
    "Catalog",
    "Compare",
    "Constraint",
    "Contains",
    "Has",
    "In",
    "Near",
    "Not",
    "Or",
    "Preference",
    "Relaxation",
    "conjuncts",
    "constraint_to_json",
    "constraint_to_string",
    "describe",
    "haversine_km",
    "parse_constraint",
    "parse_preferences",
    "preferences_to_json",
    "preferences_to_string",
    "relax",
    "weigh_matches",
]

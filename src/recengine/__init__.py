"""recengine: recommendations from event logs, measured honestly.

The package is layered: ``data`` (schema, readers, validation, weighting, splits) feeds
``models`` (one module per recommender behind :class:`~recengine.models.base.Recommender`), which
``evaluation`` measures and ``pipeline`` orchestrates; ``cli`` sits on top.
"""

__version__ = "0.1.0"

"""The hybrid recommender: candidates from every source, ranked by a neural network."""

from recengine.models.hybrid.config import HybridConfig, RankerConfig, SourceConfig
from recengine.models.hybrid.model import Hybrid

__all__ = ["Hybrid", "HybridConfig", "RankerConfig", "SourceConfig"]

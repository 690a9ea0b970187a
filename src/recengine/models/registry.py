"""Model names, as the command line and saved models use them, mapped to their classes."""

from __future__ import annotations

from recengine.errors import ModelNotFoundError
from recengine.models.base import Recommender
from recengine.models.bias import Bias
from recengine.models.category_popularity import CategoryPopularity
from recengine.models.content import ContentBased
from recengine.models.feature_map import FeatureMappedWALS
from recengine.models.knowledge import KnowledgeBased
from recengine.models.popularity import Popularity
from recengine.models.random_items import RandomItems
from recengine.models.segment_popularity import SegmentPopularity
from recengine.models.wals import WALS

__all__ = ["MODELS", "create_model", "model_class"]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, CategoryPopularity, SegmentPopularity, RandomItems,
                              Bias, WALS, FeatureMappedWALS, ContentBased, KnowledgeBased)
}


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotFoundError(
            f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}") from None


def create_model(name: str, **params: object) -> Recommender:
    """A new, unfitted model of that name."""
    return model_class(name)(**params)

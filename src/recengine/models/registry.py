"""Model names, as the command line and saved models use them, mapped to their classes.

Open: wherever a model name is accepted (``--models``, configs, manifests, the tuner), an import
path ``package.module:Class`` naming a :class:`Recommender` subclass works too, so a model
written outside the package trains, evaluates, saves, publishes and serves like a built-in one.
"""

from __future__ import annotations

import importlib
from typing import Any

from recengine.errors import ModelNotFoundError
from recengine.models.base import Recommender
from recengine.models.bias import Bias
from recengine.models.category_popularity import CategoryPopularity
from recengine.models.content import ContentBased
from recengine.models.ease import EASE
from recengine.models.feature_map import FeatureMappedWALS
from recengine.models.fresh import FreshItems
from recengine.models.hybrid import Hybrid
from recengine.models.item_knn import ItemKNN
from recengine.models.knn_baseline import KNNBaseline
from recengine.models.knowledge import KnowledgeBased
from recengine.models.markov import Markov
from recengine.models.popularity import Popularity
from recengine.models.random_items import RandomItems
from recengine.models.sasrec import SASRec
from recengine.models.segment_popularity import SegmentPopularity
from recengine.models.spark_als import SparkALS
from recengine.models.two_tower import TwoTower
from recengine.models.wals import WALS

__all__ = ["MODELS", "create_model", "model_class"]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, CategoryPopularity, SegmentPopularity, RandomItems,
                              FreshItems, Bias, KNNBaseline, WALS, FeatureMappedWALS,
                              ContentBased, KnowledgeBased, Markov, EASE, ItemKNN, SASRec,
                              TwoTower, Hybrid, SparkALS)
}


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``, or imported from ``package.module:Class``.

    >>> model_class("recengine.models.popularity:Popularity") is model_class("popularity")
    True
    """
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise ModelNotFoundError(f"unknown model {name!r}; choose from "
                                 f"{', '.join(sorted(MODELS))}, or give an import path "
                                 "package.module:Class")
    module_name, _, attribute = name.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ModelNotFoundError(f"cannot import model {name!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Recommender)):
        raise ModelNotFoundError(f"{name!r} is not a Recommender class")
    return found


def create_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted model of that name."""
    return model_class(name)(**params)

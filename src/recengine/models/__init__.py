"""Recommenders, all behind one interface (:class:`~recengine.models.base.Recommender`)."""

from recengine.models.base import Recommender
from recengine.models.bias import Bias
from recengine.models.category_popularity import CategoryPopularity
from recengine.models.content import ContentBased
from recengine.models.ease import EASE
from recengine.models.feature_map import FeatureMappedWALS
from recengine.models.fresh import FreshItems
from recengine.models.item_knn import ItemKNN
from recengine.models.knn_baseline import KNNBaseline
from recengine.models.knowledge import KnowledgeBased
from recengine.models.markov import Markov
from recengine.models.openmp import load_torch_openmp
from recengine.models.popularity import Popularity
from recengine.models.random_items import RandomItems
from recengine.models.registry import MODELS, create_model
from recengine.models.segment_popularity import SegmentPopularity
from recengine.models.wals import WALS

load_torch_openmp()  # before any compiled kernel runs: see recengine.models.openmp

__all__ = [
    "EASE",
    "MODELS",
    "WALS",
    "Bias",
    "CategoryPopularity",
    "ContentBased",
    "FeatureMappedWALS",
    "FreshItems",
    "ItemKNN",
    "KNNBaseline",
    "KnowledgeBased",
    "Markov",
    "Popularity",
    "RandomItems",
    "Recommender",
    "SegmentPopularity",
    "create_model",
]

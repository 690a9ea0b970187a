"""Cold items in the collaborative model: a learned map from item features to WALS factors.

WALS learns nothing about an item nobody has chosen yet: its factors stay at their random start.
But an item's features (genres, region, price, words in its description) predict where warm items
with the same features sit in factor space. So after WALS, a ridge regression
``W = argmin ‖F_warm W − Y_warm‖² + μ‖W‖²`` maps encoded features ``F`` to factors ``Y``, and
every item without training pairs gets ``F_cold W``. The new item can then be scored, ranked and
targeted (``audience``) by the collaborative model at once, as in LightFM's use of features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recengine.data.training_data import TrainingData
from recengine.models.base import Shape, TrainingOptions, check_fitted
from recengine.models.features import (
    EncoderConfig,
    FeatureEncoder,
    encoder_from_state,
    with_encoder_state,
)
from recengine.models.wals import WALS
from recengine.progress import ProgressCallback

__all__ = ["FeatureMappedWALS"]


class FeatureMappedWALS(WALS):
    """WALS whose items without training pairs get factors predicted from their features."""

    name = "wals-features"

    class Config(WALS.Config):
        feature_ridge: float = Field(1.0, gt=0, description="μ of the features → factors map.")
        encoder: EncoderConfig = Field(default_factory=EncoderConfig)

    config: Config
    state = (*WALS.state, "feature_map_")

    #: ``[n_features, factors]``: encoded item features → item factors.
    feature_map_: np.ndarray
    #: The fitted feature encoder, to map new items; saved through its state hooks.
    encoder_: FeatureEncoder

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        """WALS's, and how hard the features → factors map is shrunk: what decides how
        much a rare feature says about an item without events."""
        return super().search_space(fixed) | {"feature_ridge": ("float", 1e-2, 1e3, True)}

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return with_encoder_state(*super().get_state(), self.encoder_)

    def state_shapes(self) -> dict[str, Shape]:
        return super().state_shapes() | {"feature_map_": ("features", self.config.factors)}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        """The encoder must make as many features as the map has rows."""
        encoder = encoder_from_state(self.config.encoder, arrays, meta,
                                     width=len(arrays["feature_map_"]), counted_by="feature_map_")
        return super()._restore_state(arrays, meta) | {"encoder_": encoder}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        state = super()._train(data, options, progress)
        encoder = FeatureEncoder(self.config.encoder)
        features = encoder.fit_transform(data.item_features, data.item_feature_kinds)
        warm = data.item_counts() > 0
        factors = state["item_factors_"]
        feature_map = _ridge(features[warm], factors[warm], self.config.feature_ridge)
        cold = np.flatnonzero(~warm)
        if len(cold):
            factors = factors.copy()
            factors[cold] = features[cold] @ feature_map
            state |= self._factor_state(state["user_factors_"], factors)
        return state | {"feature_map_": feature_map, "encoder_": encoder}

    def map_items(self, table: pd.DataFrame) -> np.ndarray:
        """Factors for brand-new items described by a feature table (same columns as training).
        """
        check_fitted(self)
        return (self.encoder_.transform(table) @ self.feature_map_).astype(np.float32)


def _ridge(features: sp.csr_array, targets: np.ndarray, ridge: float) -> np.ndarray:
    """``(FᵀF + μI)⁻¹ Fᵀ Y`` with sparse ``F``, solved in float64."""
    gram = (features.T @ features).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += ridge
    rhs = np.asarray(features.T @ targets.astype(np.float64))
    return np.linalg.solve(gram, rhs).astype(np.float32)

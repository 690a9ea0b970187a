"""Cold items in the collaborative model: a learned map from item features to WALS factors.

WALS learns nothing about an item nobody has chosen yet: its factors stay at their random start.
But an item's features (genres, region, price, words in its description) predict where warm items
with the same features sit in factor space. So after WALS, a ridge regression
``W = argmin ‖F_warm W − Y_warm‖² + μ‖W‖²`` maps encoded features ``F`` to factors ``Y``, and
every item without training pairs gets ``F_cold W``. The new item can then be scored, ranked and
targeted (``audience``) by the collaborative model at once, as in LightFM's use of features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recengine.data.training_data import TrainingData
from recengine.errors import NotSupportedError
from recengine.models.base import check_fitted
from recengine.models.features import EncoderConfig, FeatureEncoder
from recengine.models.wals import WALS
from recengine.progress import ProgressCallback

__all__ = ["FeatureMappedWALS"]


class FeatureMappedWALS(WALS):
    """WALS whose items without training pairs get factors predicted from their features."""

    name = "wals-features"

    class Config(WALS.Config):
        feature_ridge: float = Field(1.0, gt=0, description="μ of the features → factors map.")
        encoder: EncoderConfig = Field(default_factory=EncoderConfig)

    state = (*WALS.state, "feature_map_")
    #: ``[n_features, factors]``: encoded item features → item factors.
    feature_map_: np.ndarray

    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None:
        super()._fit(data, progress)
        self._encoder = FeatureEncoder(self.config.encoder)
        features = self._encoder.fit_transform(data.item_features, data.item_feature_kinds)
        warm = data.item_counts() > 0
        self.feature_map_ = _ridge(features[warm], self.item_factors_[warm],
                                   self.config.feature_ridge)
        cold = np.flatnonzero(~warm)
        if len(cold):
            factors = self.item_factors_.copy()
            factors[cold] = features[cold] @ self.feature_map_
            self._set_factors(self.user_factors_, factors)

    def map_items(self, table: pd.DataFrame) -> np.ndarray:
        """Factors for brand-new items described by a feature table (same columns as training).

        Needs the encoder of this process's ``fit`` (it holds fitted scikit-learn objects and is
        not saved); a loaded model maps only the items it stored.
        """
        check_fitted(self)
        if not hasattr(self, "_encoder"):
            raise NotSupportedError("a loaded wals-features model cannot encode new items: "
                                    "refit it in this process")
        return (self._encoder.transform(table) @ self.feature_map_).astype(np.float32)


def _ridge(features: sp.csr_array, targets: np.ndarray, ridge: float) -> np.ndarray:
    """``(FᵀF + μI)⁻¹ Fᵀ Y`` with sparse ``F``, solved in float64."""
    gram = (features.T @ features).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += ridge
    rhs = np.asarray(features.T @ targets.astype(np.float64))
    return np.linalg.solve(gram, rhs).astype(np.float32)

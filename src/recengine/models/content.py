"""Content-based filtering: items whose features match what the user already chose.

The course's content filter by hand, as three sparse products:

1. Each item is a unit-length row ``x_i`` of a feature matrix ``X`` (see
   :mod:`recengine.models.features`: genres, tags, buckets, TF-IDF terms).
2. A user's taste profile is ``p_u = normalise(Σ_i r_ui · x_i)``: their history row (feedback,
   e.g. stars) times ``X``, L2-normalised.
3. ``score(u, i) = cos(p_u, x_i) = p_u · x_i``.

Profiles are built from the history passed at scoring time, never learned per user, so a new user
known only by a few items (fold-in) is served exactly like a training user. A user with no history
(or only featureless items) gets the catalogue's mean item weighted by popularity: the content of
what most people choose, still a ranked list. A tiny popularity term breaks ties between items
with identical features (every "Comedy|Drama" film), which cosine alone would leave to index order.

The model needs no other user's behaviour, so it can rank items nobody has chosen yet and explain
itself by shared features; but it learns likeness, not quality, which is why it pairs well with a
collaborative model in a hybrid.

Saved as arrays and JSON only: ``X`` as CSR arrays, its feature names and readable labels, the
default profile and popularity, and the fitted
:class:`~recengine.models.features.FeatureEncoder` (``encoder_``, through its own state hooks),
so a loaded model encodes new items as the fitted one did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData, check_csr
from recengine.models.base import (
    Capability,
    Recommender,
    Shape,
    TrainingOptions,
    check_fitted,
)
from recengine.models.features import (
    EncoderConfig,
    FeatureEncoder,
    encoder_from_state,
    normalize_rows,
    with_encoder_state,
)
from recengine.progress import ProgressCallback

__all__ = ["ContentBased"]

#: Shared features named in one explanation.
_REASONS = 2
#: Most features for a vector form: a dense copy of the item vectors costs at most 1 KB an item.
DENSE_FEATURES = 256


class ContentBased(Recommender):
    """Cosine between each user's feature profile and every item's features.

    Examples
    --------
    >>> import pandas as pd
    >>> from recengine.data.schema import FeatureKind
    >>> pairs = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "c"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> items = pd.DataFrame({"genres": [["Sci-Fi"], ["Sci-Fi", "Drama"], ["Comedy"],
    ...                                  ["Sci-Fi"]]}, index=pd.Index(list("abcd"), name="id"))
    >>> data = TrainingData.from_interactions(
    ...     pairs, items=items, item_feature_kinds={"genres": FeatureKind.MULTI})
    >>> model = ContentBased(min_count=1).fit(data)
    >>> model.recommend("u", n=1)[0].tolist()
    ['d']
    >>> model.explain("u", ["d"])
    ['because you like Sci-Fi']
    >>> [name for name, _ in model.profile("u")]
    ['genres=Sci-Fi', 'genres=Drama']
    """

    name = "content"
    needs_history = True  # with no history it can only offer the popular content
    capabilities = frozenset({Capability.SIMILAR_ITEMS})

    class Config(EncoderConfig):
        tie_break: float = Field(1e-6, ge=0, le=1e-3, description="Weight of popularity (0..1) "
                                 "added to the cosine, to order items with equal features.")

    config: Config

    state = ("item_data_", "item_indices_", "item_indptr_", "feature_names_", "feature_labels_",
             "default_profile_", "item_popularity_")
    item_data_: np.ndarray
    item_indices_: np.ndarray
    item_indptr_: np.ndarray
    feature_names_: np.ndarray
    feature_labels_: np.ndarray
    default_profile_: np.ndarray
    item_popularity_: np.ndarray
    #: The fitted encoder, for new items; saved through its state hooks.
    encoder_: FeatureEncoder

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return with_encoder_state(*super().get_state(), self.encoder_)

    def state_shapes(self) -> dict[str, Shape]:
        return {"feature_names_": ("features",), "feature_labels_": ("features",),
                "default_profile_": ("features",), "item_popularity_": ("items",)}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        """The item matrix must be items × features, and the encoder must make as many
        features: new items are encoded into the same columns."""
        n_features = len(arrays["feature_names_"])
        check_csr("item", [arrays[f"item_{part}_"] for part in ("data", "indices", "indptr")],
                  (len(arrays["item_popularity_"]), n_features))
        encoder = encoder_from_state(self.config, arrays, meta, width=n_features,
                                     counted_by="feature_names_")
        return super()._restore_state(arrays, meta) | {"encoder_": encoder}

    # -- training -----------------------------------------------------------------------------
    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        encoder = FeatureEncoder(self.config)
        vectors = normalize_rows(encoder.fit_transform(data.item_features,
                                                       data.item_feature_kinds))
        popularity = data.item_counts().astype(np.float32)
        mean_item = sp.csr_array(popularity[None, :]) @ vectors
        return {"item_data_": vectors.data, "item_indices_": vectors.indices,
                "item_indptr_": vectors.indptr, "feature_names_": encoder.feature_names_,
                "feature_labels_": encoder.feature_labels_,
                "item_popularity_": popularity / max(float(popularity.max()), 1.0),
                "default_profile_": normalize_rows(mean_item).toarray()[0],
                "encoder_": encoder}

    def item_vectors(self) -> sp.csr_array:
        """The unit-length ``items × features`` matrix (columns named by ``feature_names_``)."""
        check_fitted(self)
        return sp.csr_array((self.item_data_, self.item_indices_, self.item_indptr_),
                            shape=(len(self.items_), len(self.feature_names_)))

    # -- profiles -----------------------------------------------------------------------------
    def _taste(self, history: sp.csr_array) -> tuple[sp.csr_array, np.ndarray]:
        """Unit profiles ``[rows, features]``, and which rows fell back to the default."""
        profiles = normalize_rows(sp.csr_array(history, dtype=np.float32) @ self.item_vectors())
        profiles.eliminate_zeros()  # items with zero feedback add nothing to the taste
        empty = np.asarray(abs(profiles).sum(axis=1)).ravel() == 0
        if empty.any():
            default = sp.csr_array(self.default_profile_[None, :])
            profiles = sp.csr_array(profiles + sp.csr_array(empty[:, None], dtype=np.float32)
                                    @ default)
        return profiles, empty

    def profile(self, user_or_history: str | Sequence[str] | Mapping[str, float],
                n: int | None = 10) -> list[tuple[str, float]]:
        """The strongest features of a taste profile, as ``(feature name, weight)``, best first.

        Pass a training user's id, or a history (item ids, or id → feedback) for anyone else.
        """
        check_fitted(self)
        if isinstance(user_or_history, str):
            row = self.training_queries(self.users_.index([user_or_history])).bag
        else:
            row = self.history_queries(user_or_history).bag
        profile = self._taste(row)[0]
        order = np.argsort(-profile.data, kind="stable")[:n]
        return [(str(self.feature_names_[profile.indices[j]]), float(profile.data[j]))
                for j in order]

    def supports(self, capability: Capability) -> bool:
        """A vector form (HNSW retrieval) when the features are few enough to hold densely,
        at most :data:`DENSE_FEATURES` numbers an item: a score is the inner product of the unit
        taste profile and the unit item vector, plus the popularity tie-break as one more
        column."""
        if capability == Capability.RETRIEVAL:
            return (hasattr(self, "feature_names_")
                    and len(self.feature_names_) <= DENSE_FEATURES)
        return super().supports(capability)

    def _embed(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        profiles = self._taste(queries.bag)[0].toarray().astype(np.float32)
        tie_break = np.full((len(queries), 1), self.config.tie_break, np.float32)
        return np.hstack([profiles, tie_break]), np.zeros(len(queries), np.float32)

    def _item_vectors(self) -> np.ndarray:
        return np.hstack([self.item_vectors().toarray(),
                          self.item_popularity_[:, None]]).astype(np.float32)

    # -- scoring ------------------------------------------------------------------------------
    def _with_tie_break(self, cosines: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(cosines, dtype=np.float32)
        out += self.config.tie_break * popularity
        return out

    def _score(self, queries: Queries) -> np.ndarray:
        profiles = self._taste(queries.bag)[0]
        return self._with_tie_break(_cosines(profiles, self.item_vectors()),
                                    self.item_popularity_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        vectors = self.item_vectors()
        return self._with_tie_break(_cosines(vectors[items], vectors), self.item_popularity_)

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Every training user's score for each item: one product, not a pass over all users."""
        profiles = self._taste(self.training_queries(np.arange(len(self.users_))).bag)[0]
        return self._with_tie_break(_cosines(self.item_vectors()[items], profiles),
                                    self.item_popularity_[items][:, None])

    # -- explanations -------------------------------------------------------------------------
    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        profiles, empty = self._taste(queries.bag)
        profile = profiles.toarray()[0]
        vectors = self.item_vectors()
        return [self._reason(vectors[[int(i)]], profile, bool(empty[0])) for i in items]

    def _reason(self, item: sp.csr_array, profile: np.ndarray, popular: bool) -> str:
        """Name the item's features that weigh most in the profile ("because you like ...")."""
        shared = item.data * profile[item.indices]
        order = np.argsort(-shared, kind="stable")
        words = [str(self.feature_labels_[item.indices[j]]) for j in order if shared[j] > 0]
        words = [w for w in words if w][:_REASONS]
        if not words:
            return "popular overall" if popular else "shares no feature with your taste profile"
        liked = " and ".join(words)
        return f"popular content: {liked}" if popular else f"because you like {liked}"


def _cosines(rows: sp.csr_array, vectors: sp.csr_array) -> np.ndarray:
    """``rows @ vectors.T`` as a dense ``[len(rows), len(vectors)]`` block.

    Profiles are far denser than items (a user's films cover most genres), and sparse × sparse
    products with a near-dense output are slow: sparse ``vectors`` times the densified ``rows``
    is ten times faster on MovieLens. Densifying costs no more memory than the output block as
    long as there are fewer features than vectors; otherwise stay sparse until the end.
    """
    if rows.shape[1] <= vectors.shape[0]:
        return np.asarray(vectors @ rows.toarray().T).T
    return (rows @ vectors.T).toarray()

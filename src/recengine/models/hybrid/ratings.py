"""The hybrid's rating head: explicit ratings predicted by a DCN-v2 over what several rating
models predict for the pair and what is known of the user and the item.

How it learns without fooling itself: a model's prediction for a pair it was trained on is too
good, so the network would learn to trust whichever source overfits most. The rated pairs are
split into ``folds``; each source is fitted once per fold without that fold's pairs and
predicts them (cross-fitting, as stacked models are trained), so every training row holds
predictions for an unseen pair. The network starts as the first source's prediction (its output
layer at zero, as the ranker starts from the first answer), learns the residual with a squared
loss, and stops early on held-out pairs. Then the sources are refitted on all the ratings.

It is a head of its own rather than a second output of the ranker: the ranker learns from
candidate lists (signals standardised per request, for an order), this head from rated pairs
(predictions on the rating scale); the ranker is also dropped back to its starting order when it
cannot show a gain, and the rating head must not go with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.hybrid.candidates import Source
from recengine.models.hybrid.config import RatingHeadConfig, SourceConfig
from recengine.models.hybrid.ranker import build_network, ranker_scores
from recengine.models.hybrid.signals import Profile
from recengine.models.torch_training import Epochs, torch_module, train_epochs
from recengine.progress import ProgressCallback

__all__ = ["RatingHead", "fit_rating_head", "pair_features", "rating_feature_names"]

#: Fits the given sources on some data: the hybrid's own ``_fit_sources``.
FitSources = Callable[[Sequence[SourceConfig], TrainingData], tuple[Source, ...]]

_USER = ("log-ratings", "rating-spread")


@dataclass(frozen=True)
class RatingHead:
    """The fitted head: its sources (fitted on all the ratings), the network, and the
    training ratings' range, which predictions are clipped to."""

    sources: tuple[Source, ...]
    network: Any
    low: float
    high: float

    def predict(self, profile: Profile, queries: Queries, users: np.ndarray,
                items: np.ndarray) -> np.ndarray:
        """The rating of each pair (``users`` index the training users, each a row of
        ``queries`` in order of ``np.unique(users)``)."""
        features = pair_features(self.sources, profile, queries, users, items)
        return self.decode(ranker_scores(self.network, features, "cpu"))

    def decode(self, output: np.ndarray) -> np.ndarray:
        """The network's output (the first source's standardised scale) as clipped ratings."""
        mean, scale = float(self.network.mean[0]), float(self.network.scale[0])
        return np.clip(output * scale + mean, self.low, self.high).astype(np.float32)


def rating_feature_names(tags: Sequence[str], profile: Profile) -> list[str]:
    """The name of each column :func:`pair_features` writes, in order."""
    return ([f"{tag}:prediction" for tag in tags] + [f"item:{n}" for n in profile.item_names]
            + [f"user:{n}" for n in profile.user_names] + list(_USER))


def pair_features(sources: Sequence[Source], profile: Profile, queries: Queries,
                  users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``[n_pairs, n_features]``: each source's prediction for the pair, the item's and the
    user's profile, and the user's number of ratings and their spread (from ``queries``, one
    row per distinct user of ``users`` in sorted order)."""
    distinct, row = np.unique(users, return_inverse=True)
    if len(distinct) != len(queries):
        raise ValueError(f"{len(queries)} queries for {len(distinct)} distinct users")
    bag = queries.bag
    counts = np.diff(bag.indptr)
    owners = np.repeat(np.arange(len(counts)), counts)
    mean = np.bincount(owners, weights=bag.data, minlength=len(counts)) / np.maximum(counts, 1)
    square = np.bincount(owners, weights=bag.data.astype(np.float64) ** 2,
                         minlength=len(counts)) / np.maximum(counts, 1)
    spread = np.sqrt(np.maximum(square - mean**2, 0.0))
    predictions = np.column_stack([s.model.score_indices(users, items) for s in sources])
    return np.column_stack([
        np.nan_to_num(predictions), profile.items[items], profile.users[users],
        np.log1p(counts)[row], spread[row]]).astype(np.float32)


def _rated_pairs(data: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each rating's user, item and value, and its entry's position in ``data.feedback``."""
    ratings = data.ratings.tocoo()
    keys = ratings.row.astype(np.int64) * data.n_items + ratings.col
    feedback = data.feedback
    owners = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(feedback.indptr))
    entries = owners * data.n_items + feedback.indices
    order = np.argsort(entries, kind="stable")
    position = order[np.searchsorted(entries, keys, sorter=order)]
    return (ratings.row.astype(np.int64), ratings.col.astype(np.int64),
            ratings.data.astype(np.float32), position)


def fit_rating_head(config: RatingHeadConfig, data: TrainingData, fit_sources: FitSources,
                    profile_of: Callable[[TrainingData], Profile], device: Any, seed: int,
                    progress: ProgressCallback | None) -> tuple[RatingHead, dict[str, Any]]:
    """The head fitted on ``data``'s ratings (see the module), and how training went."""
    if not data.has_ratings:
        raise DataError("the rating head needs explicit ratings; this data has none",
                        column="ratings")
    users, items, values, entries = _rated_pairs(data)
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, config.folds, len(values))
    features, targets = [], []
    for turn in range(config.folds):
        held = fold == turn
        drop = np.zeros(data.feedback.nnz, dtype=bool)
        drop[entries[held]] = True
        part = data.drop_pairs(drop)
        sources = fit_sources(config.sources, part)
        asked = np.unique(users[held])
        features.append(pair_features(sources, profile_of(part), part.queries(asked),
                                      users[held], items[held]))
        targets.append(values[held])
        if progress:
            progress("cross-fitting the rating head's sources", turn + 1, config.folds)
    x, y = np.vstack(features), np.concatenate(targets)
    keep = rng.permutation(len(y))[:config.max_pairs]
    n_valid = max(1, round(config.validation_share * len(keep)))
    network, epochs = _fit_network(config, x[keep[n_valid:]], y[keep[n_valid:]],
                                   x[keep[:n_valid]], y[keep[:n_valid]], device, progress)
    head = RatingHead(fit_sources(config.sources, data), network, float(values.min()),
                      float(values.max()))
    valid = head.decode(ranker_scores(network, x[keep[:n_valid]], "cpu"))
    first = np.clip(x[keep[:n_valid], 0], head.low, head.high)
    return head, {"epochs": epochs.run, "best_epoch": epochs.best, "pairs": len(keep),
                  "validation_rmse": _rmse(valid, y[keep[:n_valid]]),
                  "first_source_validation_rmse": _rmse(first, y[keep[:n_valid]])}


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def _fit_network(config: RatingHeadConfig, x: np.ndarray, y: np.ndarray, x_valid: np.ndarray,
                 y_valid: np.ndarray, device: Any,
                 progress: ProgressCallback | None) -> tuple[Any, Epochs]:
    """A DCN starting as input 0 (the first source's prediction), trained by squared error on
    the ratings standardised like that input, stopped early on the validation RMSE."""
    torch = torch_module()
    network = build_network(x.shape[1], config, prior=0).to(device)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    network.mean.copy_(torch.from_numpy(mean))
    network.scale.copy_(torch.from_numpy(scale))
    target = torch.from_numpy(((y - mean[0]) / scale[0]).astype(np.float32))
    inputs = torch.from_numpy(x)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)

    def epoch() -> None:
        network.train()
        for batch in torch.randperm(len(inputs)).split(config.batch_size):
            loss = ((network(inputs[batch].to(device)) - target[batch].to(device)) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    def validate() -> float:
        output = ranker_scores(network, x_valid, device) * scale[0] + mean[0]
        return -_rmse(np.clip(output, y.min(), y.max()), y_valid)

    epochs = train_epochs(network, epochs=config.epochs, patience=config.patience,
                          train=epoch, validate=validate, progress=progress,
                          description="training the hybrid's rating head", validate_first=True)
    network.eval()
    return network, epochs

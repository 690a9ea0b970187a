"""Two-tower retrieval: a user tower and an item tower trained so that their cosine ranks what
the user chose first (YouTube's and TensorFlow Recommenders' retrieval model).

- **Item tower**: the item's encoded features (:mod:`recengine.models.features`: genres,
  numbers, dates, TF-IDF or MiniLM text) and its id, each an embedding, summed, then an MLP.
- **User tower**: the user's last ``history`` items, read from the query at request time, their
  item embeddings pooled (mean or attention), beside the user's own features (request-time
  ones when the query has them) and optionally a user-id embedding, then an MLP. A new user
  with a history, and events logged a moment ago, are served without a refit.
- **Loss**: softmax over the batch's other positives with the log-Q correction (Yi et al.
  2019) plus ``random_negatives`` uniform ones, at a fixed temperature
  (:func:`recengine.models.towers.sampled_softmax_loss`). Each training pair's user is
  described by their history *without* the pair's item, so the tower learns to predict an item
  from the others, not to recognise it.
- **Id dropout**: each batch drops the ids of ``id_dropout`` of its items (and users), so the
  towers learn to place them by features alone: items without events (cold items) get vectors
  from their features, and ``use_item_ids=False`` makes it a *learned* content-based model.
- **Rare features left out**: a feature input (a title word, a label) found on fewer than
  ``min_feature_items`` items with training events is not an input. A word on one or two
  titles names those items as surely as their ids do, so the tower learns warm items by their
  words, and a cold item's rare words (untrained, or another item's) mislead its vector; on
  MovieLens's cold-item validation carve, leaving them out took nDCG@10 from 0.13 to about
  0.22 (docs/benchmarks.md, two-tower protocol 4). The id has its own dropout, above.
- **Early stopping** on one random item of each of (at most) ``validation_users`` users, held
  out of the training log (:func:`~recengine.models.torch_training.hold_out_random`): nDCG@10
  over the whole catalogue, seen items excluded. A random item, not the last, because the
  model pools an unordered history and is judged on random splits; the best epoch's networks
  are kept.

Serving needs no item tower: item vectors (and the item embeddings the user tower pools) are
computed once at the end of training and saved as arrays, so RETRIEVAL puts them in the HNSW
graph. The user tower is saved as arrays too and rebuilt in torch when the model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries, Sequences
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import (
    Capability,
    ModelConfig,
    Recommender,
    Shape,
    TrainingOptions,
)
from recengine.models.features import (
    EncoderConfig,
    FeatureEncoder,
    encoder_from_state,
    with_encoder_state,
)
from recengine.models.torch_training import (
    HeldOut,
    hold_out_random,
    load_network,
    network_arrays,
    next_item_hits,
    torch_module,
    train_epochs,
    training_session,
)
from recengine.progress import ProgressCallback

__all__ = ["TwoTower", "padded_rows", "recent_items"]

#: Validation's cut-off (nDCG@10, the evaluator's headline metric).
_VALIDATION_K = 10
#: Rows scored at once when computing vectors for a whole vocabulary.
_BLOCK = 4096
#: Scores held at once in validation (64 MB of float32).
_SCORES = 1 << 24


class TwoTower(Recommender):
    """A user tower and an item tower whose cosine ranks items.

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": ["u", "u", "v", "v", "w"],
    ...                       "item_id": ["a", "b", "a", "c", "b"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> model = TwoTower(embedding_dim=8, layers=(8,), epochs=2).fit(
    ...     TrainingData.from_interactions(pairs))
    >>> model.recommend("w", n=2)[0].shape, model.item_vectors_.shape
    ((2,), (3, 8))
    """

    name = "two-tower"
    needs_history = True
    devices = ("cpu", "cuda")
    capabilities = frozenset({Capability.RETRIEVAL, Capability.SIMILAR_ITEMS,
                              Capability.SIMILAR_RETRIEVAL, Capability.USER_VECTORS,
                              Capability.USER_FEATURES})

    class Config(ModelConfig):
        embedding_dim: int = Field(64, ge=2, description="Width of every input embedding.")
        layers: tuple[int, ...] = Field((128, 64), min_length=1, description="Widths of "
                                        "each tower's MLP; the last is the vectors' width.")
        pooling: Literal["mean", "attention"] = Field("mean", description="How the user "
                                                      "tower pools its history's items.")
        history: int = Field(50, ge=1, description="The user's most recent items read.")
        use_item_ids: bool = Field(True, description="An id embedding per item; False: "
                                   "items known by their features only (learned content).")
        use_item_features: bool = Field(True, description="Encode the items' features.")
        use_user_features: bool = Field(True, description="Encode the users' features.")
        use_user_ids: bool = Field(False, description="An id embedding per training user.")
        id_dropout: float = Field(0.1, ge=0, lt=1, description="Share of ids dropped per "
                                  "batch, so that items and users are placed by features.")
        min_feature_items: int = Field(10, ge=0, description="Item feature inputs (a "
                                       "label, a word) found on fewer items with training "
                                       "events are left out: they name items, and say "
                                       "nothing of a cold one.")
        temperature: float = Field(0.1, gt=0, description="Cosines are divided by it.")
        logq_correction: bool = Field(True, description="Correct in-batch negatives for "
                                      "their popularity (Yi et al. 2019).")
        random_negatives: int = Field(64, ge=0, description="Uniform negatives per batch, "
                                      "beside the in-batch ones.")
        batch_size: int = Field(512, ge=2)
        learning_rate: float = Field(3e-3, gt=0)
        weight_decay: float = Field(0.0, ge=0)
        epochs: int = Field(40, ge=1, description="At most this many passes.")
        patience: int = Field(3, ge=1, description="Epochs without a better validation "
                              "nDCG@10 before stopping.")
        validation_users: int = Field(2000, ge=0, description="Users giving one held-out "
                                      "item each to validation; 0: no early stopping.")
        item_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
        user_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
        random_state: int = 0

    config: Config
    state = ("item_vectors_", "item_inputs_", "user_feature_index_", "user_feature_weight_")
    #: ``[items, layers[-1]]``: the item tower's unit vectors (cold items' from features).
    item_vectors_: np.ndarray
    #: ``[items, embedding_dim]``: the item embeddings the user tower pools.
    item_inputs_: np.ndarray
    #: Training users' encoded features, padded (index 0 with weight 0).
    user_feature_index_: np.ndarray
    user_feature_weight_: np.ndarray
    #: The user tower (torch), and the encoder of request-time user features.
    user_net_: Any
    user_encoder_: FeatureEncoder | None
    #: How training went: epochs run, the best one, its validation nDCG@10.
    training_: dict[str, float]

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space: dict[str, tuple[str, float, float, bool]] = {
            "embedding_dim": ("int", 16, 128, True),
            "temperature": ("float", 0.02, 0.5, True),
            "learning_rate": ("float", 3e-4, 1e-2, True),
            "random_negatives": ("int", 0, 256, False),
            "weight_decay": ("float", 1e-9, 1e-4, True),
        }
        if fixed.get("use_item_ids", True) or fixed.get("use_user_ids", False):
            space["id_dropout"] = ("float", 0.0, 0.9, False)
        if fixed.get("use_item_features", True):
            space["min_feature_items"] = ("int", 1, 100, True)
        return space

    # -- state ------------------------------------------------------------------------------
    def _user_inputs(self) -> int:
        """Rows of the user tower's own embedding table: features, then training users."""
        features = 0 if self.user_encoder_ is None else len(self.user_encoder_.feature_names_)
        return features + (len(self.users_) if self.config.use_user_ids else 0)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = super().get_state()
        arrays |= network_arrays(self.user_net_, "user_net.")
        meta = meta | {"training": self.training_}
        if self.user_encoder_ is None:
            return arrays, meta | {"encoder": None}
        return with_encoder_state(arrays, meta, self.user_encoder_)

    def state_shapes(self) -> dict[str, Shape]:
        width = ("users", "user_width")
        return {"item_vectors_": ("items", self.config.layers[-1]),
                "item_inputs_": ("items", self.config.embedding_dim),
                "user_feature_index_": width, "user_feature_weight_": width}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        """The user tower rebuilt from its arrays: its table must have a row per encoded user
        feature (and per user, with ids), and the stored features must index into it."""
        n_users = len(arrays["user_feature_index_"])
        encoder = None
        if meta["encoder"] is not None:
            table = arrays.get("user_net.bag.table.weight", np.zeros((0, 0)))
            ids = n_users if self.config.use_user_ids else 0
            encoder = encoder_from_state(self.config.user_encoder, arrays, meta,
                                         width=len(table) - ids,
                                         counted_by="user_net.bag.table.weight")
        n_features = 0 if encoder is None else len(encoder.feature_names_)
        index = arrays["user_feature_index_"]
        if index.size and not (index.min() >= 0 and index.max() < max(n_features, 1)):
            raise DataError(f"user_feature_index_ names features outside 0..{n_features - 1}")
        n_inputs = n_features + (n_users if self.config.use_user_ids else 0)
        net = _user_tower(self.config, n_inputs)
        load_network(net, arrays, "user_net.")
        net.eval()
        return super()._restore_state(arrays, meta) | {
            "user_net_": net, "user_encoder_": encoder, "training_": dict(meta["training"])}

    # -- training ---------------------------------------------------------------------------
    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        cfg = self.config
        items = _item_table(data, cfg)
        user_encoder, user_features = _user_features(data, cfg)
        with training_session(options, cfg.random_state, default_threads=1) as device:
            fitted = _Training(cfg, data, items, user_features, device,
                               options.seed_or(cfg.random_state)).run(progress)
        return fitted | {"user_encoder_": user_encoder,
                         "user_feature_index_": user_features[0],
                         "user_feature_weight_": user_features[1]}

    # -- scoring ----------------------------------------------------------------------------
    def answers(self, queries: Queries) -> np.ndarray:
        """Users it trained on, users with a history, and users with request-time features."""
        out = super().answers(queries)
        if self.user_encoder_ is not None and _has_columns(queries, self.user_encoder_):
            out = np.ones(len(queries), dtype=bool)
        return out

    def _user_vectors(self, queries: Queries) -> np.ndarray:
        torch = torch_module()
        seqs = queries.sequences
        if queries.session is not None:
            seqs = seqs.append(queries.session)
        recent = recent_items(seqs, self.config.history)
        rows, cols = np.nonzero(recent >= 0)
        index, weight = self._own_inputs(queries)
        with torch.no_grad():
            out = self.user_net_(torch.from_numpy(self.item_inputs_), torch.from_numpy(rows),
                                 torch.from_numpy(recent[rows, cols]),
                                 torch.from_numpy(index), torch.from_numpy(weight))
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)

    def _own_inputs(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """Each query's own inputs to the user tower: its features (the request's when the
        query has them, else the training user's stored ones) and its id when known."""
        users = queries.users
        known = users >= 0
        index = self.user_feature_index_[np.maximum(users, 0)].astype(np.int64)
        weight = self.user_feature_weight_[np.maximum(users, 0)] * known[:, None]
        encoder = self.user_encoder_
        if encoder is not None and _has_columns(queries, encoder):
            assert queries.user_features is not None
            index, weight = padded_rows(encoder.transform(queries.user_features))
        if self.config.use_user_ids:
            first = 0 if encoder is None else len(encoder.feature_names_)
            index, weight = _with_ids(index, weight, first + np.maximum(users, 0), known)
        return index, weight.astype(np.float32)

    def _score(self, queries: Queries) -> np.ndarray:
        return self._user_vectors(queries) @ self.item_vectors_.T

    def _embed(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        return self._user_vectors(queries), np.zeros(len(queries), np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.item_vectors_[items] @ self.item_vectors_.T

    def _similar_vectors(self, items: np.ndarray | None = None) -> np.ndarray:
        return self.item_vectors_ if items is None else self.item_vectors_[items]

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """The item of the history whose vector is closest to each recommended item's: what
        the user tower pooled that the item resembles most (cheap and true of the vectors,
        not a full attribution of the tower)."""
        history = np.unique(recent_items(queries.sequences, self.config.history)[0])
        history = history[history >= 0]
        if not len(history):
            own = "your profile" if self.user_encoder_ is not None else "no history"
            return [f"learned from users with {own}"] * len(items)
        cosines = self.item_vectors_[np.asarray(items)] @ self.item_vectors_[history].T
        nearest = history[np.argmax(cosines, axis=1)]
        return [f"close to {self.items_.ids[j]}, which you chose (cosine {c:.2f})"
                for j, c in zip(nearest, cosines.max(axis=1), strict=True)]


# -- inputs as padded rows ------------------------------------------------------------------


def padded_rows(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """A sparse matrix's rows as ``(index, weight)`` arrays ``[rows, widest row]``, padded
    with index 0 and weight 0: what :class:`~recengine.models.towers.FeatureBag` reads.

    >>> index, weight = padded_rows(sp.csr_array(np.array([[0, 2.0, 3.0], [1.0, 0, 0]])))
    >>> index.tolist(), weight.tolist()
    ([[1, 2], [0, 0]], [[2.0, 3.0], [1.0, 0.0]])
    """
    matrix = sp.csr_array(matrix, dtype=np.float32)
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    width = int(lengths.max(initial=0))
    index = np.zeros((matrix.shape[0], width), dtype=np.int64)
    weight = np.zeros((matrix.shape[0], width), dtype=np.float32)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    cols = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    index[rows, cols], weight[rows, cols] = matrix.indices, matrix.data
    return index, weight


def recent_items(seqs: Sequences, n: int) -> np.ndarray:
    """Each row's last ``n`` items, oldest first, padded with -1: ``[rows, n]``.

    >>> recent_items(Sequences.from_rows([[1, 2, 3], [4]]), 2).tolist()
    [[2, 3], [4, -1]]
    """
    lengths = np.minimum(np.diff(seqs.indptr), n)
    out = np.full((len(seqs), n), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(seqs)), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = seqs.items[np.repeat(seqs.indptr[1:] - lengths, lengths) + cols]
    return out


def _with_ids(index: np.ndarray, weight: np.ndarray, ids: np.ndarray,
              present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One more input column, the last: row ``r``'s id input ``ids[r]``, weighing 1 where
    ``present`` (0 drops it: a row known by its features only)."""
    return (np.column_stack([index, ids]),
            np.column_stack([weight, present.astype(np.float32)]))


def _item_table(data: TrainingData, cfg: TwoTower.Config) -> tuple[np.ndarray, np.ndarray, int]:
    """Every item's inputs ``(index, weight, table rows)``: encoded features on at least
    ``min_feature_items`` warm items, then its id (last column, weight 1 for items with
    training events: an untrained id says nothing)."""
    features = sp.csr_array((data.n_items, 0), dtype=np.float32)
    if cfg.use_item_features and data.item_feature_kinds:
        features = FeatureEncoder(cfg.item_encoder).fit_transform(data.item_features,
                                                                  data.item_feature_kinds)
        support = np.diff(sp.csc_array(features[data.item_counts() > 0]).indptr)
        features = sp.csr_array(features[:, support >= cfg.min_feature_items])
    if not cfg.use_item_ids and features.shape[1] == 0:
        raise DataError("use_item_ids=False needs item features: the data declares none, or "
                        f"none is on {cfg.min_feature_items} items with events (lower "
                        "min_feature_items)", column="use_item_ids")
    index, weight = padded_rows(features)
    if not cfg.use_item_ids:
        return index, weight, features.shape[1]
    index, weight = _with_ids(index, weight, features.shape[1] + np.arange(data.n_items),
                              data.item_counts() > 0)
    return index, weight, features.shape[1] + data.n_items


def _user_features(data: TrainingData, cfg: TwoTower.Config
                   ) -> tuple[FeatureEncoder | None, tuple[np.ndarray, np.ndarray, int]]:
    """The user feature encoder (None without features), and training users' padded rows
    with the number of encoded features."""
    if not (cfg.use_user_features and data.user_feature_kinds):
        return None, (np.zeros((data.n_users, 0), np.int64),
                      np.zeros((data.n_users, 0), np.float32), 0)
    encoder = FeatureEncoder(cfg.user_encoder)
    features = encoder.fit_transform(data.user_features, data.user_feature_kinds)
    return encoder, (*padded_rows(features), features.shape[1])


def _has_columns(queries: Queries, encoder: FeatureEncoder) -> bool:
    table = queries.user_features
    return table is not None and {f.field for f in encoder.fields_} <= set(table.columns)


def _user_tower(cfg: TwoTower.Config, n_inputs: int) -> Any:
    from recengine.models.towers import UserTower

    return UserTower(n_inputs, cfg.embedding_dim, cfg.layers, cfg.pooling)


# -- the training loop ----------------------------------------------------------------------


class _Training:
    """One fit's networks, inputs and loop (all on ``device``)."""

    def __init__(self, cfg: TwoTower.Config, data: TrainingData,
                 items: tuple[np.ndarray, np.ndarray, int],
                 user_features: tuple[np.ndarray, np.ndarray, int], device: Any,
                 seed: int) -> None:
        torch = torch_module()
        from recengine.models.towers import ItemTower

        self.torch, self.cfg, self.device = torch, cfg, device
        self.rng = np.random.default_rng(seed)
        self.n_items, self.n_users = data.n_items, data.n_users
        self.held = (hold_out_random(data.log, max_rows=cfg.validation_users, seed=seed)
                     if cfg.validation_users else HeldOut(data.log, np.zeros(0, np.int64),
                                                          np.zeros(0, np.int64)))
        bag = self.held.train.bag(data.n_items)
        self.pair_users = np.repeat(np.arange(data.n_users), np.diff(bag.indptr))
        self.pair_items = bag.indices.astype(np.int64)
        if not len(self.pair_items):
            raise DataError("no training pairs left after the validation carve")
        counts = np.bincount(self.pair_items, minlength=data.n_items)
        self.share = torch.from_numpy(counts / counts.sum()).float().to(device)
        self.recent = recent_items(self.held.train, cfg.history)
        self.item_index = torch.from_numpy(items[0]).to(device)
        self.item_weight = torch.from_numpy(items[1]).to(device)
        index, weight, n_user_inputs = user_features
        if cfg.use_user_ids:
            index, weight = _with_ids(index, weight, n_user_inputs + np.arange(data.n_users),
                                      np.ones(data.n_users, dtype=bool))
            n_user_inputs += data.n_users
        self.user_index = torch.from_numpy(index).to(device)
        self.user_weight = torch.from_numpy(weight).to(device)
        self.users = _user_tower(cfg, n_user_inputs).to(device)
        self.items = ItemTower(items[2], cfg.embedding_dim, cfg.layers).to(device)
        self.n_user_inputs = n_user_inputs
        self.network = torch.nn.ModuleDict({"user": self.users, "item": self.items})

    def run(self, progress: ProgressCallback | None) -> dict[str, Any]:
        cfg, torch = self.cfg, self.torch
        optimiser = torch.optim.Adam(self.network.parameters(), lr=cfg.learning_rate,
                                     weight_decay=cfg.weight_decay)

        def epoch() -> None:
            self.network.train()
            for batch in np.array_split(self.rng.permutation(len(self.pair_items)),
                                        max(1, len(self.pair_items) // cfg.batch_size)):
                optimiser.zero_grad()
                loss = self._loss(batch)
                if not torch.isfinite(loss):
                    raise DataError(f"two-tower training diverged (loss {float(loss)}): lower "
                                    "learning_rate or raise temperature",
                                    column="learning_rate")
                loss.backward()
                optimiser.step()

        done = train_epochs(self.network, epochs=cfg.epochs, patience=cfg.patience,
                            train=epoch, validate=self._validate if len(self.held.rows)
                            else None, progress=progress, description="training two-tower")
        inputs, vectors = self._item_vectors()
        user_net = _user_tower(cfg, self.n_user_inputs)
        user_net.load_state_dict(self.users.state_dict())
        user_net.eval()
        return {"item_inputs_": inputs, "item_vectors_": vectors, "user_net_": user_net,
                "training_": {"epochs": done.run, "best_epoch": done.best + 1,
                              "validation_ndcg@10": done.scores[done.best]
                              if done.scores else float("nan")}}

    # -- one batch ----------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(array).to(self.device)

    def _item_inputs(self, items: np.ndarray, dropout: bool) -> Any:
        torch = self.torch
        rows = torch.from_numpy(items).to(self.device)
        weight = self.item_weight[rows]
        if dropout and self.cfg.use_item_ids:
            weight = self._drop_ids(weight)
        return self.items.inputs(self.item_index[rows], weight)

    def _own_inputs(self, users: np.ndarray, dropout: bool) -> tuple[Any, Any]:
        torch = self.torch
        rows = torch.from_numpy(users).to(self.device)
        weight = self.user_weight[rows]
        if dropout and self.cfg.use_user_ids:
            weight = self._drop_ids(weight)
        return self.user_index[rows], weight

    def _drop_ids(self, weight: Any) -> Any:
        """The id column (the last, :func:`_with_ids`) zeroed in ``id_dropout`` of the rows."""
        if self.cfg.id_dropout == 0:
            return weight
        keep = self.torch.rand(len(weight), device=self.device) >= self.cfg.id_dropout
        return self.torch.cat([weight[:, :-1], weight[:, -1:] * keep.unsqueeze(1)], dim=1)

    def _loss(self, batch: np.ndarray) -> Any:
        from recengine.models.towers import sampled_softmax_loss

        torch, cfg = self.torch, self.cfg
        users, targets = self.pair_users[batch], self.pair_items[batch]
        recent = self.recent[users]
        # the target is what to predict: it is no part of the history that predicts it
        rows, cols = np.nonzero((recent >= 0) & (recent != targets[:, None]))
        negatives = self.rng.integers(0, self.n_items, cfg.random_negatives)
        unique, inverse = np.unique(np.concatenate([recent[rows, cols], targets, negatives]),
                                    return_inverse=True)
        inputs = self._item_inputs(unique, dropout=True)
        on = self._tensor
        user_vectors = self.users(inputs, on(rows), on(inverse[:len(rows)]),
                                  *self._own_inputs(users, dropout=True))
        picked = inputs[on(inverse[len(rows):])]
        positives = self.items(picked[:len(batch)])
        target_ids = on(targets)
        log_q = negative_log_q = None
        if cfg.logq_correction:
            log_q = torch.log(self.share[target_ids] * len(batch))
            negative_log_q = float(np.log(max(cfg.random_negatives, 1) / self.n_items))
        return sampled_softmax_loss(
            user_vectors, positives, target_ids, cfg.temperature, log_q=log_q,
            negatives=self.items(picked[len(batch):]), negative_ids=on(negatives),
            negative_log_q=negative_log_q or 0.0)

    # -- whole vocabularies ---------------------------------------------------------------
    def _item_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item's input embedding and unit vector, without dropout."""
        torch = self.torch
        self.network.eval()
        inputs, vectors = [], []
        with torch.no_grad():
            for start in range(0, self.n_items, _BLOCK):
                block = self._item_inputs(np.arange(start, min(start + _BLOCK, self.n_items)),
                                          dropout=False)
                inputs.append(block)
                vectors.append(self.items(block))
        return (torch.cat(inputs).cpu().numpy().astype(np.float32),
                torch.cat(vectors).cpu().numpy().astype(np.float32))

    def _validate(self) -> float:
        """nDCG@10 of the held-out items, every item ranked, the rest of each history
        excluded."""
        torch = self.torch
        inputs, vectors = self._item_vectors()
        rows, total = self.held.rows, 0.0
        block = max(1, _SCORES // self.n_items)  # rows × items scores at a time
        with torch.no_grad():
            items = self._tensor(inputs)
            for start in range(0, len(rows), block):
                users = rows[start:start + block]
                recent = self.recent[users]
                at, cols = np.nonzero(recent >= 0)
                out = self.users(items, self._tensor(at), self._tensor(recent[at, cols]),
                                 *self._own_inputs(users, dropout=False))
                ndcg, _ = next_item_hits(out.cpu().numpy() @ vectors.T,
                                         self.held.targets[start:start + block],
                                         self.held.train.take(users), k=_VALIDATION_K)
                total += ndcg * len(users)
        return total / len(rows)

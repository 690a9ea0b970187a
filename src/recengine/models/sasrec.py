"""SASRec: self-attention over a user's most recent events, trained with gSASRec's loss.

recengine's second model of order, after :mod:`~recengine.models.markov`: where the Markov chain
reads only the last item, SASRec (Kang & McAuley, ICDM 2018) attends over the last
``max_length`` events, so *which* items came before the last one, and in what order, change the
answer. Each event is the sum of four embeddings:

- its item (shared with the output side: a next-item score is a dot product with it);
- its event type (a view, a booking, a rating), by name, so a request's types map onto the
  training types whatever codes it carries;
- the time since the user's previous event, bucketed on a log2 scale (seconds), with a bucket
  for "unknown" (no timestamp, or the user's first event);
- its position, counted from the most recent event.

A causal mask lets position ``t`` see events ``0..t`` only; left padding is masked out as keys.
Every position predicts the next event's item during training.

Losses (``loss``):

- ``"auto"`` (default): ``"softmax"`` for catalogues of at most :data:`SOFTMAX_MAX_ITEMS` items,
  ``"gbce"`` above. On validation carves of the training part, at 15 epochs, the softmax ranks
  better than gBCE with 256 negatives on MovieLens 100K (nDCG@10 0.110 against 0.102) and
  latest-small (0.061 against 0.050; 2,048 negatives 0.052), though there gBCE fits in a tenth
  of the softmax's time: see docs/benchmarks.md, "SASRec (issue 12)".
- ``"gbce"``: gSASRec (Petrov & Macdonald, RecSys 2023). ``negatives`` items sampled
  uniformly per sequence (every position of a sequence shares them: one gather of
  ``negatives × hidden`` per sequence rather than per position) and the positive's probability
  raised to β = α(t(1 − 1/α) + 1/α), α = negatives / (n_items − 1), t = ``calibration``.
  Sampled negatives make plain BCE overconfident about the positive; β undoes it (t = 0 is plain
  BCE, t = 1 fully calibrated). The loss is averaged over the 1 + negatives logits, as theirs.
  Every logit is offset by log(β / negatives) (:func:`logit_offset`), the optimum's scale:
  started at 0 instead, many negatives drove the network into one answer for every history.
- ``"bce"``: the original SASRec: one sampled negative, β = 1.
- ``"softmax"``: cross-entropy over the whole catalogue (small catalogues only: it costs a score
  per item for every position).

Training reads each user's time-ordered log (:attr:`TrainingData.log`) cut into windows of
``max_length`` + 1 events from its end, so every event is a target once per epoch. Each
user's last event is held out (:func:`~recengine.models.torch_training.hold_out_last`, at most
``validation_users`` users) and nDCG@10 on it, seen items excluded, decides early stopping; the
network that validated best is kept. Event types and time gaps are hidden from the network for
a random tenth of the training events, so a request that carries neither (an anonymous
session, a history given as item ids) meets inputs the network has learned to read.

``fits`` > 1 fits that many networks, the k-th with the fit's seed + k (so fit 0 is the
network ``fits=1`` gives), and sums their next-item logits: side by side they are one network
whose output and item table are the members' concatenated, so the vector form and the HNSW
path serve it unchanged. One fit's ranking moves with its seed (on latest-small, nDCG@10 0.044
to 0.059 over nine seeds); a sum of three ranked above each of its members on the validation
carve and, in three draws, on the test part there (docs/benchmarks.md, "SASRec"). It costs
``fits`` times the training, memory and scoring: off by default.

A query is scored at request time: its history then its session (:class:`Queries`), the last
``max_length`` events, through the network; the last position's output against every item
embedding. Known users, new users by history and anonymous sessions are all one path; a query
with no events gets the training popularity (``needs_history``: a fallback chain asks the next
model). Saved as arrays: the network's parameters, the event-type names and the popularity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from recengine.data.query import NO_TIME, Queries, Sequences, _ranks
from recengine.data.training_data import TrainingData
from recengine.models.base import (
    Capability,
    ModelConfig,
    Recommender,
    Shape,
    TrainingOptions,
)
from recengine.models.torch_training import (
    Epochs,
    hold_out_last,
    load_network,
    network_arrays,
    next_item_hits,
    torch_module,
    train_epochs,
    training_session,
)
from recengine.progress import ProgressCallback

__all__ = ["SASRec", "gbce_beta", "gbce_loss", "logit_offset", "resolve_loss"]

#: Time-gap buckets: 0 unknown, then 1 + floor(log2(1 + seconds)), the last open-ended
#: (2^30 seconds is 34 years).
GAP_BUCKETS = 32
#: Share of training events whose type and gap are hidden (index 0): see the module docstring.
UNKNOWN_RATE = 0.1
#: Query rows per forward pass when scoring: bounds memory at rows × catalogue scores.
SCORE_ROWS = 256
#: Standard deviation of the embeddings' initial values.
INIT_STD = 0.02
#: Validation's cut-off (nDCG@10, as the issue's protocol).
VALIDATION_K = 10
#: ``loss="auto"`` uses the full softmax up to this many items (a training step then holds
#: ``batch_size × max_length × items`` logits: 128 × 50 × 10,000 floats, 256 MB), gBCE above.
SOFTMAX_MAX_ITEMS = 10_000


class SASRec(Recommender):
    """Next-item scores from causal self-attention over the query's recent events.

    Examples
    --------
    >>> import pandas as pd
    >>> from recengine.data.training_data import TrainingData
    >>> rows = [(f"u{u}", item, t) for u in range(30)
    ...         for t, item in enumerate(["a", "b", "c"] if u % 2 else ["b", "a", "d"])]
    >>> events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    >>> pairs = events.assign(rating=float("nan"), feedback=1.0)
    >>> model = SASRec(hidden=16, max_length=4, epochs=80, validation_users=0,
    ...                learning_rate=0.02).fit(TrainingData.from_interactions(pairs))
    >>> model.recommend_history(["a", "b"], n=1)[0].tolist(), \
model.recommend_history(["b", "a"], n=1)[0].tolist()
    (['c'], ['d'])
    """

    name = "sasrec"
    capabilities = frozenset({Capability.ORDER, Capability.RETRIEVAL})
    devices = ("cpu", "cuda")
    needs_history = True  # with no events it can only offer popularity

    class Config(ModelConfig):
        max_length: int = Field(50, ge=1, le=4096, description="N: how many of the most "
                                "recent events the network reads.")
        hidden: int = Field(64, ge=2, le=4096, description="Embedding and hidden size.")
        layers: int = Field(2, ge=1, le=16, description="Transformer blocks.")
        heads: int = Field(1, ge=1, le=64, description="Attention heads (divide hidden).")
        dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings and in "
                               "every block.")
        loss: Literal["auto", "gbce", "bce", "softmax"] = Field(
            "auto", description="auto: softmax up to 10,000 items, else gbce; gbce: gSASRec's "
            "calibrated BCE with sampled negatives; bce: one negative (the original SASRec); "
            "softmax: the whole catalogue.")
        negatives: int = Field(256, ge=1, le=100_000, description="gbce's negatives per "
                               "sequence (capped at the catalogue size minus one).")
        calibration: float = Field(0.75, ge=0, le=1, description="gbce's t: 1 calibrates "
                                   "fully, 0 is plain BCE.")
        learning_rate: float = Field(5e-3, gt=0, le=1, description="Adam's step size.")
        l2: float = Field(0.0, ge=0, description="Adam's weight decay.")
        batch_size: int = Field(128, ge=1, description="Users per training step.")
        epochs: int = Field(15, ge=1, description="At most this many passes over the users "
                            "(15 at 5e-3: about 90 s on MovieLens 100K, one CPU thread).")
        patience: int = Field(4, ge=1, description="Epochs without a better validation "
                              "nDCG@10 before training stops.")
        validation_users: int = Field(1024, ge=0, description="Users whose last event is "
                                      "held out for early stopping (0: none, train all "
                                      "epochs).")
        fits: int = Field(1, ge=1, le=16, description="Networks fitted, the k-th with seed "
                          "+ k, their next-item logits summed: a lower spread across seeds "
                          "and a better mean, at fits times the cost (see the module "
                          "docstring).")
        random_state: int = 0

        @field_validator("heads")
        @classmethod
        def _heads_divide_hidden(cls, heads: int, info: ValidationInfo) -> int:
            hidden = info.data.get("hidden")
            if hidden is not None and hidden % heads:
                raise ValueError(f"heads ({heads}) must divide hidden ({hidden})")
            return heads

    config: Config

    state = ("event_types_", "item_counts_")
    #: The training log's event types, by name (code k + 1 in the network; 0 is unknown).
    event_types_: np.ndarray
    #: Distinct training users of each item: the answer to a query with no events.
    item_counts_: np.ndarray
    #: Derived (rebuilt from the arrays): the network, on the CPU, in evaluation mode.
    network_: Any
    #: Derived: the item side of every score (:func:`_item_vectors`), built once per fit or
    #: load, not per request.
    item_vectors_: np.ndarray
    #: Per fit: validation nDCG@10 after each epoch, and the epoch whose network was kept
    #: (JSON).
    validation_: list[list[float]]
    best_epoch_: list[int]

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space: dict[str, tuple[str, float, float, bool]] = {
            "layers": ("int", 1, 3, False),
            "dropout": ("float", 0.0, 0.5, False),
            "learning_rate": ("float", 1e-4, 1e-2, True),
            "l2": ("float", 1e-8, 1e-3, True),
        }
        if fixed.get("heads", 1) == 1:  # other head counts need a hidden size they divide
            space["hidden"] = ("int", 16, 128, True)
        if fixed.get("loss", "auto") in ("gbce", "auto"):  # auto: gbce on large catalogues
            space |= {"negatives": ("int", 16, 512, True),
                      "calibration": ("float", 0.0, 1.0, False)}
        return space

    # -- training -----------------------------------------------------------------------------
    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        cfg = self.config
        types = np.asarray(data.log.event_types, dtype=str)
        seed = options.seed_or(cfg.random_state)
        fitted = [self._fit_network(data, types, replace(options, seed=seed + k), progress,
                                    "" if cfg.fits == 1 else f" (fit {k + 1} of {cfg.fits})")
                  for k in range(cfg.fits)]
        network = fitted[0][0] if cfg.fits == 1 else _ensemble([f[0] for f in fitted])
        return {"event_types_": types, "item_counts_": data.item_counts(),
                "network_": network, "validation_": [f[1].scores for f in fitted],
                "best_epoch_": [f[1].best for f in fitted],
                "item_vectors_": _item_vectors(network, data.item_counts())}

    def _fit_network(self, data: TrainingData, types: np.ndarray, options: TrainingOptions,
                     progress: ProgressCallback | None, which: str) -> tuple[Any, Epochs]:
        """One network, fitted with ``options``' seed, and its validation curve."""
        cfg = self.config
        seed = options.seed_or(cfg.random_state)
        with training_session(options, cfg.random_state) as device:
            held = (hold_out_last(data.log, max_rows=cfg.validation_users, seed=seed)
                    if cfg.validation_users else None)
            log = data.log if held is None else held.train
            windows = _windows(log, cfg.max_length + 1, _type_codes(log, types),
                               _training_stops(log, cfg.max_length))
            history = log.take(held.rows) if held is not None else Sequences.empty()
            network = _network_class()(data.n_items, len(types), cfg).to(device)
            trainer = _Trainer(network, cfg, data.n_items, device)

            def validate() -> float:
                assert held is not None
                scores = _forward_scores(network, history, types, cfg.max_length)
                return next_item_hits(scores, held.targets, history, k=VALIDATION_K)[0]

            done = train_epochs(network, epochs=cfg.epochs, patience=cfg.patience,
                                train=lambda: trainer.epoch(windows),
                                validate=validate if held is not None and len(held.rows)
                                else None, progress=progress,
                                description=f"training {self.name}{which}")
            network.to("cpu").eval()
        return network, done

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, _ = super().get_state()
        return arrays | network_arrays(self.network_), {
            "validation": self.validation_, "best_epoch": self.best_epoch_}

    def state_shapes(self) -> dict[str, Shape]:
        return {"item_counts_": ("items",), "event_types_": ("event_types",)}  # the network:
        # checked whole by load_network, against the one these sizes build

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        types = np.asarray(arrays["event_types_"], dtype=str)
        counts = np.asarray(arrays["item_counts_"], dtype=np.int64)
        network = _network(len(counts), len(types), self.config)
        load_network(network, arrays)
        network.eval()
        return {"event_types_": types, "item_counts_": counts, "network_": network,
                "item_vectors_": _item_vectors(network, counts),
                **_curves(meta)}

    # -- scoring ------------------------------------------------------------------------------
    def _score(self, queries: Queries) -> np.ndarray:
        vectors, _ = self._embed(queries)
        return vectors @ self.item_vectors_.T

    def _embed(self, queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """The network's last hidden state beside a 0 for a query with events, 0s beside a 1
        for one without: against :meth:`_item_vectors`, next-item scores or popularity, one
        inner product either way, so the HNSW path answers both."""
        seqs = queries.events()
        vectors = np.zeros((len(queries), self.item_vectors_.shape[1]), dtype=np.float32)
        has = np.diff(seqs.indptr) > 0
        vectors[~has, -1] = 1.0
        if has.any():
            rows = np.flatnonzero(has)
            vectors[rows, :-1] = _last_hidden(self.network_, seqs.take(rows), self.event_types_,
                                              self.config.max_length)
        return vectors, np.zeros(len(queries), np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """Names the recent event's item most alike each recommended item (cosine of their
        embeddings, the network's own notion of related items); popularity with no events."""
        seqs = queries[:1].events()
        recent = seqs.row_items(0)[-self.config.max_length:]
        items = np.asarray(items, dtype=np.int64)
        if not len(recent):
            n_users = len(self.users_)
            return [f"popular: {int(self.item_counts_[j])} of {n_users} users chose it"
                    for j in items.tolist()]
        vectors = self.network_.item_table().detach().numpy()[1:]
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        alike = unit[items] @ unit[recent].T  # [items, recent]
        names = self.items_.id_of(recent[np.argmax(alike, axis=1)])
        return [f"follows your recent {name}" for name in names.tolist()]


def resolve_loss(loss: str, n_items: int) -> str:
    """The loss ``loss`` names for a catalogue of ``n_items``: ``"auto"`` is the full softmax
    up to :data:`SOFTMAX_MAX_ITEMS` items, gBCE above.

    >>> resolve_loss("auto", 1682), resolve_loss("auto", 100_000), resolve_loss("bce", 10)
    ('softmax', 'gbce', 'bce')
    """
    if loss != "auto":
        return loss
    return "softmax" if n_items <= SOFTMAX_MAX_ITEMS else "gbce"


def gbce_beta(negatives: int, n_items: int, calibration: float) -> float:
    """gSASRec's β = α(t(1 − 1/α) + 1/α), α = negatives / (n_items − 1).

    >>> gbce_beta(256, 1683, 0.0), round(gbce_beta(256, 1683, 1.0), 4)  # BCE; calibrated: α
    (1.0, 0.1522)
    """
    alpha = negatives / max(n_items - 1, 1)
    return alpha * (calibration * (1 - 1 / alpha) + 1 / alpha)


def logit_offset(negatives: int, beta: float) -> float:
    """log(β / negatives): the logit an item of average popularity has where a sampled loss is
    at its optimum, added to every training logit of the sampled losses (a constant: it
    changes no ranking, so scoring leaves it out).

    An item that is the next one with probability p, and drawn as a negative ``negatives`` / n
    times per target on average, minimises gBCE where σ(s) / (1 − σ(s)) = β p n / negatives:
    for p = 1 / n, s = log(β / negatives). Without the offset every logit starts near 0,
    σ = ½, and the negatives' gradients outweigh the positive's ``negatives`` / β times: the
    quickest way down is one direction shared by every item embedding, with the hidden state
    turned against it, the same for every history. On MovieLens 100K (gBCE, 256 negatives)
    that is where training went: item embeddings 93 % one shared direction, the hidden states
    of 500 users one vector (its share of their energy 1.00, against 0.28 under the softmax),
    nDCG@10 at popularity's level. Started at the optimum's scale, the logits need no such
    direction (docs/benchmarks.md, "SASRec").

    >>> logit_offset(1, 1.0), round(logit_offset(256, gbce_beta(256, 1683, 1.0)), 3)
    (0.0, -7.428)
    """
    return math.log(beta / negatives)


def gbce_loss(positive: Any, negative: Any, beta: float) -> Any:
    """Mean gBCE over positions: −(β log σ(s⁺) + Σ log(1 − σ(s⁻))) / (1 + negatives).

    ``positive`` is ``[positions]``, ``negative`` ``[positions, negatives]`` (logits); written
    with softplus, which is stable where the logs of sigmoids are not.
    """
    torch = torch_module()
    softplus = torch.nn.functional.softplus
    per_position = beta * softplus(-positive) + softplus(negative).sum(dim=-1)
    return (per_position / (1 + negative.shape[-1])).mean()


class _Trainer:
    """One epoch of minibatches over the users' windows, with the configured loss."""

    def __init__(self, network: Any, cfg: SASRec.Config, n_items: int, device: Any) -> None:
        torch = torch_module()
        self.torch, self.network, self.cfg, self.n_items, self.device = (
            torch, network, cfg, n_items, device)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.l2)
        self.kind = resolve_loss(cfg.loss, n_items)
        self.negatives = (1 if self.kind == "bce" else
                          max(1, min(cfg.negatives, n_items - 1)))
        self.beta = (gbce_beta(self.negatives, n_items, cfg.calibration)
                     if self.kind == "gbce" else 1.0)
        self.offset = logit_offset(self.negatives, self.beta)

    def epoch(self, windows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        torch, net = self.torch, self.network
        net.train()
        order = torch.randperm(len(windows[0])).numpy()
        for start in range(0, len(order), self.cfg.batch_size):
            pick = order[start:start + self.cfg.batch_size]
            items, kinds, gaps = (_trim(w[pick], windows[0][pick]) for w in windows)
            items, kinds, gaps = (torch.from_numpy(w).to(self.device)
                                  for w in (items, kinds, gaps))
            inputs, targets = items[:, :-1], items[:, 1:]
            hidden = net(inputs, *_hide(torch, kinds[:, :-1], gaps[:, :-1]))
            loss = self.loss(hidden, targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def loss(self, hidden: Any, targets: Any) -> Any:
        """The configured loss of outputs ``[B, L, hidden]`` against their next items
        ``[B, L]`` (indices shifted by one; 0 where there is no next item)."""
        torch, table = self.torch, self.network.items.weight
        valid = targets > 0
        if self.kind == "softmax":
            logits = hidden[valid] @ table[1:].T
            return torch.nn.functional.cross_entropy(logits, targets[valid] - 1)
        positive = (hidden * table[targets]).sum(dim=-1)[valid] + self.offset
        sampled = torch.randint(1, self.n_items + 1, (len(targets), self.negatives),
                                device=self.device)  # per sequence, shared by its positions
        negative = torch.bmm(hidden, table[sampled].transpose(1, 2))[valid] + self.offset
        return gbce_loss(positive, negative, self.beta)


def _hide(torch: Any, kinds: Any, gaps: Any) -> tuple[Any, Any]:
    """Event types and gaps set to unknown (0) for :data:`UNKNOWN_RATE` of the events."""
    hidden = torch.rand(kinds.shape, device=kinds.device) < UNKNOWN_RATE
    return kinds.masked_fill(hidden, 0), gaps.masked_fill(hidden, 0)


def _trim(window: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``window`` without the left columns that are padding in every row of ``items``."""
    width = int((items > 0).sum(axis=1).max()) if len(items) else 0
    return np.ascontiguousarray(window[:, window.shape[1] - max(width, 1):])


def _type_codes(seqs: Sequences, types: np.ndarray) -> np.ndarray:
    """For each of ``seqs``' event-type codes, the network's type index (training type k is
    k + 1; a type the model did not train on, or none, is 0: unknown)."""
    index = {name: k + 1 for k, name in enumerate(types.tolist())}
    return np.array([index.get(name, 0) for name in seqs.event_types], dtype=np.int64)


def _gap_buckets(seqs: Sequences) -> np.ndarray:
    """Each event's time since the previous event of its row, as a bucket (0: unknown)."""
    times = seqs.timestamps
    out = np.zeros(seqs.n_events, dtype=np.int64)
    if seqs.n_events < 2:
        return out
    first = np.zeros(seqs.n_events, dtype=bool)
    first[seqs.indptr[:-1][np.diff(seqs.indptr) > 0]] = True
    known = ~first[1:] & (times[1:] != NO_TIME) & (times[:-1] != NO_TIME)
    gap = np.where(known, times[1:] - np.where(known, times[:-1], 0), 0)
    known &= gap >= 0  # an event logged before the one it follows: gap unknown
    buckets = 1 + np.minimum(np.floor(np.log2(1.0 + np.maximum(gap, 0))), GAP_BUCKETS - 2)
    out[1:] = np.where(known, buckets, 0)
    return out


def _windows(seqs: Sequences, length: int, codes: np.ndarray,
             stops: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of at most ``length`` events, right-aligned and left-padded with 0: item
    indices + 1, event-type indices (``codes`` maps the sequences' codes), gap buckets.

    One window per row, its last events, unless ``stops`` gives where (event positions,
    exclusive) each window ends; a window never reaches back into the previous row.
    """
    if stops is None:
        stops, firsts = seqs.indptr[1:], seqs.indptr[:-1]
    else:
        firsts = seqs.indptr[np.searchsorted(seqs.indptr, stops, side="left") - 1]
    lengths = np.minimum(stops - firsts, length)
    rows = np.repeat(np.arange(len(stops)), lengths)
    column = length - np.repeat(lengths, lengths) + _ranks(lengths)
    source = np.repeat(stops - lengths, lengths) + _ranks(lengths)
    items, kinds, gaps = (np.zeros((len(stops), length), dtype=np.int64) for _ in range(3))
    items[rows, column] = seqs.items[source].astype(np.int64) + 1
    kinds[rows, column] = codes[seqs.kinds[source]] if len(codes) else 0
    gaps[rows, column] = _gap_buckets(seqs)[source]
    return items, kinds, gaps


def _training_stops(seqs: Sequences, length: int) -> np.ndarray:
    """Where the training windows of ``length`` + 1 events end: from each row's end back,
    every ``length`` events, so that every event but a row's first is a target exactly once
    (the original trains on each user's last window only: on MovieLens 100K with N = 50 that
    leaves 60% of the events unused)."""
    lengths = np.diff(seqs.indptr)
    count = np.where(lengths >= 2, -(-(lengths - 1) // length), 0)
    rows = np.repeat(np.arange(len(seqs)), count)
    return seqs.indptr[rows + 1] - _ranks(count) * length


def _item_vectors(network: Any, counts: np.ndarray) -> np.ndarray:
    """Each item's output embedding, and its popularity as a share of the most chosen item's
    (the score of a query without events): the item side of ``SASRec._embed``."""
    table = network.item_table().detach().cpu().numpy()[1:]
    share = counts / max(float(counts.max(initial=0)), 1.0)
    return np.column_stack([table, share]).astype(np.float32)


def _forward_scores(network: Any, seqs: Sequences, types: np.ndarray,
                    max_length: int) -> np.ndarray:
    """``[len(seqs), n_items]`` next-item scores of rows that each have events."""
    table = network.item_table().detach().cpu().numpy()[1:]
    return _last_hidden(network, seqs, types, max_length) @ table.T


def _last_hidden(network: Any, seqs: Sequences, types: np.ndarray,
                 max_length: int) -> np.ndarray:
    """``[len(seqs), hidden]``: the network's output at the last event of each row (rows that
    each have events), in blocks of :data:`SCORE_ROWS` rows, each padded only to its longest
    row. Its inner product with an item's embedding is that item's next-item score."""
    torch = torch_module()
    codes = _type_codes(seqs, types)
    table = network.item_table()
    out = np.empty((len(seqs), table.shape[1]), dtype=np.float32)
    was_training = network.training
    network.eval()
    with torch.no_grad():
        for start in range(0, len(seqs), SCORE_ROWS):
            rows = np.arange(start, min(start + SCORE_ROWS, len(seqs)))
            block = seqs if len(rows) == len(seqs) else seqs.take(rows)
            windows = _windows(block, max_length, codes)
            items, kinds, gaps = (torch.from_numpy(_trim(w, windows[0])).to(table.device)
                                  for w in windows)
            out[rows] = network(items, kinds, gaps)[:, -1].cpu().numpy()
    network.train(was_training)
    return out


def _network(n_items: int, n_types: int, cfg: SASRec.Config) -> Any:
    """A fresh network for ``n_items`` items and ``n_types`` event types: one, or an ensemble
    of ``cfg.fits`` (what a saved state is loaded into)."""
    nets = [_network_class()(n_items, n_types, cfg) for _ in range(cfg.fits)]
    return nets[0] if cfg.fits == 1 else _ensemble(nets)


def _ensemble(networks: list[Any]) -> Any:
    """Fitted networks as one: outputs and item tables side by side, so one inner product
    sums their logits (a product of their softmaxes, up to each query's constant)."""
    return _ensemble_class()(networks)


def _curves(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Each fit's validation curve and best epoch from a saved state's metadata; a state
    saved before ``fits`` holds one fit's, unnested."""
    curves, best = meta.get("validation", []), meta.get("best_epoch", -1)
    if not curves or not isinstance(curves[0], list):
        curves, best = [curves], [best]
    return {"validation_": [[float(v) for v in c] for c in curves],
            "best_epoch_": [int(b) for b in best]}


@functools.cache
def _network_class() -> type:
    """The network's class, defined on first use: torch is imported only then."""
    torch = torch_module()
    nn = torch.nn
    module: Any = nn.Module  # torch is imported lazily: its classes are Any here

    class SASRecNetwork(module):
        """Embeddings, causal pre-norm transformer blocks, a final norm: ``[B, L]`` item,
        type and gap indices (left-padded with 0) → ``[B, L, hidden]`` outputs."""

        def __init__(self, n_items: int, n_types: int, cfg: SASRec.Config) -> None:
            super().__init__()
            self.scale = math.sqrt(cfg.hidden)
            self.heads = cfg.heads
            self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
            self.types = nn.Embedding(n_types + 1, cfg.hidden)
            self.gaps = nn.Embedding(GAP_BUCKETS, cfg.hidden)
            self.positions = nn.Embedding(cfg.max_length, cfg.hidden)
            self.dropout = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, dim_feedforward=cfg.hidden,
                                           dropout=cfg.dropout, batch_first=True,
                                           norm_first=True)
                for _ in range(cfg.layers))
            self.norm = nn.LayerNorm(cfg.hidden)
            for table in (self.items, self.types, self.gaps, self.positions):
                # small, as transformers start: N(0, 1) rows give logits of size ~hidden,
                # saturating the sigmoid of every score from the first step
                nn.init.normal_(table.weight, std=INIT_STD)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def item_table(self) -> Any:
            """``[items + 1, hidden]``: row 0 padding, then each item's embedding."""
            return self.items.weight

        def forward(self, items: Any, types: Any, gaps: Any) -> Any:
            length = items.shape[1]
            padding = items == 0
            recency = torch.arange(length - 1, -1, -1, device=items.device)
            x = (self.items(items) * self.scale + self.types(types) + self.gaps(gaps)
                 + self.positions(recency)[None])
            x = self.dropout(x) * ~padding[..., None]
            future = torch.ones(length, length, dtype=torch.bool,
                                device=items.device).triu(1)
            itself = torch.eye(length, dtype=torch.bool, device=items.device)
            # True: not attended. Padding is no key, except to itself (no row all masked).
            mask = future[None] | (padding[:, None, :] & ~itself[None])
            mask = mask.repeat_interleave(self.heads, dim=0)
            for block in self.blocks:
                x = block(x, src_mask=mask)
            return self.norm(x)

    return SASRecNetwork


@functools.cache
def _ensemble_class() -> type:
    """The ensemble's class, defined on first use (torch is imported only then)."""
    torch = torch_module()
    module: Any = torch.nn.Module

    class SASRecEnsemble(module):
        """Several fitted :class:`SASRecNetwork` s: their outputs concatenated, as their item
        tables are."""

        def __init__(self, members: list[Any]) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)

        def item_table(self) -> Any:
            return torch.cat([m.item_table() for m in self.members], dim=1)

        def forward(self, items: Any, types: Any, gaps: Any) -> Any:
            return torch.cat([m(items, types, gaps) for m in self.members], dim=-1)

    return SASRecEnsemble

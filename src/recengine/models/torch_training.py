"""What recengine's PyTorch models share: training options kept to the fit, a validation carve
from the training log, early stopping on it, and networks saved as arrays.

- :func:`training_session` honours :class:`TrainingOptions` (device, seed, threads) for one fit
  only: torch's global random state and thread count are restored afterwards, so a fit neither
  changes nor depends on what ran before it (a seed gives the same network on the CPU).
- :func:`hold_out_last` carves each user's last item from the training log (for next-item
  models), :func:`hold_out_random` one random item of theirs (for models of the whole history,
  judged on random splits), and :func:`next_item_hits` measures nDCG and hit rate on the
  carve: the early-stopping signal, computed on training data only (never on the evaluator's
  test part).
- :class:`EarlyStopping` keeps the best network seen and says when to stop;
  :func:`train_epochs` is the epoch loop every model runs around it.
- :func:`network_arrays` and :func:`load_network` turn a network's parameters into the plain
  arrays a saved model holds (never pickle) and back, checking every name and shape.

torch is imported on first use (the ``neural`` extra), never when this module is imported: the
server and the core models start without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from recengine._extras import require
from recengine.data.query import Sequences, take_ranges
from recengine.errors import DataError

if TYPE_CHECKING:
    from recengine.models.base import TrainingOptions
    from recengine.progress import ProgressCallback

__all__ = ["EarlyStopping", "Epochs", "HeldOut", "hold_out_last", "hold_out_random",
           "load_network", "network_arrays", "next_item_hits", "torch_module", "train_epochs",
           "training_session"]


def torch_module() -> ModuleType:
    """torch, or a :class:`MissingExtraError` naming the ``neural`` extra."""
    return require("torch", extra="neural", feature="the neural models")


@contextmanager
def training_session(options: TrainingOptions, default_seed: int,
                     default_threads: int | None = None) -> Iterator[Any]:
    """The ``torch.device`` to train on, with torch seeded from ``options`` (else
    ``default_seed``) and limited to ``options.threads`` (else ``default_threads``, else
    torch's own count); the caller's random state and thread count come back when the block
    ends, even when it raises.

    A model of small tensors passes ``default_threads=1``: its operations are too small to
    share, and on a busy machine two threads waiting on each other made each of them about
    twenty times slower (the two-tower model on MovieLens 100K, load average 7 on 2 cores).
    """
    torch = torch_module()
    device = torch.device(options.device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    threads = torch.get_num_threads()
    limit = options.threads if options.threads is not None else default_threads
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(options.seed_or(default_seed))
        if limit is not None:
            torch.set_num_threads(limit)
        try:
            yield device
        finally:
            torch.set_num_threads(threads)


@dataclass(frozen=True)
class HeldOut:
    """The training log without each held-out user's last visit, and those visits."""

    #: The log left to train on (every row kept, held-out rows one event shorter).
    train: Sequences
    #: Rows (users) that gave an event, and the item of that event.
    rows: np.ndarray
    targets: np.ndarray


def hold_out_last(log: Sequences, *, min_events: int = 2, max_rows: int | None = None,
                  seed: int = 0) -> HeldOut:
    """Each row's last event held out, for rows with at least ``min_events`` events (so some
    history is left to predict it from); ``max_rows`` draws that many such rows at random
    (seeded) to bound validation's cost on large logs.

    >>> held = hold_out_last(Sequences.from_rows([[1, 2, 3], [4], [5, 6]]))
    >>> held.rows.tolist(), held.targets.tolist(), held.train.row_items(0).tolist()
    ([0, 2], [3, 6], [1, 2])
    """
    lengths = np.diff(log.indptr)
    rows = np.flatnonzero(lengths >= min_events)
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    last = log.indptr[rows + 1] - 1
    keep = np.ones(log.n_events, dtype=bool)
    keep[last] = False
    return HeldOut(log.keep(keep), rows.astype(np.int64), log.items[last].astype(np.int64))


def hold_out_random(log: Sequences, *, min_items: int = 2, max_rows: int | None = None,
                    seed: int = 0) -> HeldOut:
    """One random item of each row with at least ``min_items`` distinct items held out, with
    every event of it (a view and a later booking of one item are one pair: keeping either
    would leak the answer); ``max_rows`` draws that many such rows (seeded).

    The carve for models of a whole, unordered history, judged on random splits: a user's
    last item would carve the task of predicting the future, not the one they are judged on.

    >>> held = hold_out_random(Sequences.from_rows([[1, 2, 1], [4], [5, 6]]), seed=2)
    >>> held.rows.tolist(), held.targets.tolist(), held.train.row_items(0).tolist()
    ([0, 2], [1, 5], [2])
    """
    rng = np.random.default_rng(seed)
    lengths = np.diff(log.indptr)
    owner = np.repeat(np.arange(len(log)), lengths)
    distinct = np.bincount(owner[_first_of_pair(owner, log.items)], minlength=len(log))
    rows = np.flatnonzero(distinct >= min_items)
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
    picked = log.indptr[rows] + (rng.random(len(rows)) * lengths[rows]).astype(np.int64)
    target_of = np.full(len(log), -1, dtype=np.int64)
    target_of[rows] = log.items[picked]
    keep = log.items != target_of[owner]
    return HeldOut(log.keep(keep), rows.astype(np.int64), target_of[rows])


def _first_of_pair(owner: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions of the first event of each distinct (row, item) pair."""
    return np.unique(owner.astype(np.int64) * (int(items.max(initial=0)) + 1) + items,
                     return_index=True)[1]


def next_item_hits(scores: np.ndarray, targets: np.ndarray, seen: Sequences | None = None,
                   k: int = 10) -> tuple[float, float]:
    """Mean nDCG@k and hit rate@k of one target item per row of ``scores``.

    ``seen`` (one row per score row) are excluded from ranking, except the target itself, as
    the evaluator does: a target ranks below the items that score strictly higher.

    >>> next_item_hits(np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]]), np.array([2, 0]))
    (0.8154648767857288, 1.0)
    """
    scores = np.array(scores, dtype=np.float32)
    rows = np.arange(len(scores))
    target = scores[rows, targets].copy()
    if seen is not None:
        indptr, pick = take_ranges(seen.indptr, rows)
        scores[np.repeat(rows, np.diff(indptr)), seen.items[pick]] = -np.inf
    scores[rows, targets] = target  # the target itself is never excluded
    rank = (scores > target[:, None]).sum(axis=1)
    hit = np.isfinite(target) & (rank < k)  # a target scored -inf or NaN is never found
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(ndcg.mean()) if len(ndcg) else 0.0, float(hit.mean()) if len(hit) else 0.0


class EarlyStopping:
    """The best validation score so far, the network's parameters then, and when to stop.

    Stops after ``patience`` evaluations without an improvement greater than ``min_delta``;
    :meth:`best_state` is the parameters at the best evaluation (copied to the CPU), so the
    model installs the network that validated best, not the last one trained.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = -np.inf
        self.best_epoch = -1
        self._since = 0
        self._state: dict[str, Any] | None = None

    def update(self, score: float, network: Any, epoch: int) -> bool:
        """Record one evaluation; True when training should stop."""
        if score > self.best + self.min_delta or self._state is None:
            self.best, self.best_epoch, self._since = score, epoch, 0
            self._state = {name: tensor.detach().to("cpu", copy=True)
                           for name, tensor in network.state_dict().items()}
            return False
        self._since += 1
        return self._since >= self.patience

    def best_state(self) -> dict[str, Any]:
        if self._state is None:
            raise RuntimeError("no evaluation recorded")
        return self._state


@dataclass(frozen=True)
class Epochs:
    """How :func:`train_epochs` went: epochs run, the one whose network was kept (from 0; -1
    for the network as it was before training), and the validation score after each (empty
    without a carve)."""

    run: int
    best: int
    scores: list[float]


def train_epochs(network: Any, *, epochs: int, patience: int, train: Callable[[], None],
                 validate: Callable[[], float] | None, progress: ProgressCallback | None,
                 description: str, validate_first: bool = False) -> Epochs:
    """Up to ``epochs`` calls of ``train`` (one epoch each), then ``validate()`` when given,
    stopping after ``patience`` epochs without a better score and loading the network that
    validated best back into ``network``. Without ``validate`` every epoch runs and the last
    network stays. ``progress(description, epoch, epochs)`` after each epoch.

    ``validate_first`` also validates the network before any training (a network that starts
    as a known-good answer): if no epoch beats it, it is kept, and ``best`` is -1.
    """
    stop = EarlyStopping(patience)
    scores: list[float] = []
    if validate is not None and validate_first:
        stop.update(validate(), network, -1)
    run = 0
    for epoch in range(epochs):
        train()
        run = epoch + 1
        if progress:
            progress(description, run, epochs)
        if validate is None:
            continue
        scores.append(validate())
        if stop.update(scores[-1], network, epoch):
            break
    if not scores:
        return Epochs(run, run - 1, scores)
    network.load_state_dict(stop.best_state())
    return Epochs(run, stop.best_epoch, scores)


def network_arrays(network: Any, prefix: str = "net.") -> dict[str, np.ndarray]:
    """The network's parameters and buffers as arrays named ``prefix + name``."""
    return {prefix + name: tensor.detach().cpu().numpy()
            for name, tensor in network.state_dict().items()}


def load_network(network: Any, arrays: Mapping[str, np.ndarray], prefix: str = "net.") -> None:
    """Load arrays from :func:`network_arrays` into ``network`` (built with the same
    configuration); a missing, extra or misshapen parameter is a :class:`DataError` naming it."""
    torch = torch_module()
    expected = network.state_dict()
    given = {name[len(prefix):]: value for name, value in arrays.items()
             if name.startswith(prefix)}
    for name in expected.keys() - given.keys():
        raise DataError(f"the saved state has no array {prefix + name!r}")
    for name in given.keys() - expected.keys():
        raise DataError(f"the saved state has an unexpected array {prefix + name!r}")
    for name, tensor in expected.items():
        if tuple(given[name].shape) != tuple(tensor.shape):
            raise DataError(f"{prefix + name} is {tuple(given[name].shape)}, expected "
                            f"{tuple(tensor.shape)}")
    network.load_state_dict({name: torch.from_numpy(np.array(value))
                             for name, value in given.items()})

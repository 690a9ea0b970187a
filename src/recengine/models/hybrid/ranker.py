"""The ranker: a deep & cross network (DCN-v2) scoring each candidate from its signals, trained
with a listwise loss over each user's candidate list.

DCN-v2 (Wang et al. 2021) runs explicit crossing layers ``x_{l+1} = x_0 ⊙ (W x_l + b) + x_l``
beside a plain deep tower and reads both: the cross layers learn the products of features a
plain network approximates poorly (this source's score *given* that user's activity, a genre
*for* a user's age). The loss is the softmax cross-entropy of each user's candidates against the
items they went on to choose: what nDCG rewards is the order within one user's list, not a
calibrated probability per pair. Inputs are standardised with the training rows' mean and
spread, kept in the network's buffers, so a saved ranker carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recengine.data.query import take_ranges
from recengine.models.hybrid.config import RankerConfig
from recengine.models.torch_training import Epochs, torch_module, train_epochs
from recengine.progress import ProgressCallback

__all__ = ["Lists", "NetworkShape", "build_network", "clearly_better", "fit_ranker", "list_ndcg",
           "ranker_scores", "validation_ndcg"]


@dataclass(frozen=True)
class Lists:
    """Candidate lists to learn from: rows of ``features`` ragged by ``indptr`` (one list per
    request), ``labels`` 1 for the items the user chose, and each list's number of chosen items
    in all (found by the candidates or not: the ideal nDCG counts them all); ``users``, when
    known, the user of each list (a user may have several: one per device, one per carve)."""

    indptr: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    n_relevant: np.ndarray
    users: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def joined(cls, parts: list[Lists]) -> Lists:
        """The lists of every part, one after another."""
        lengths = np.concatenate([np.diff(p.indptr) for p in parts])
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        users = (None if any(p.users is None for p in parts)
                 else np.concatenate([p.users for p in parts if p.users is not None]))
        return cls(indptr, np.vstack([p.features for p in parts]),
                   np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.n_relevant for p in parts]), users)

    def take(self, lists: np.ndarray) -> Lists:
        """The lists at positions ``lists``, in that order."""
        indptr, pick = take_ranges(self.indptr, lists)
        return Lists(indptr, self.features[pick], self.labels[pick], self.n_relevant[lists],
                     None if self.users is None else self.users[lists])

    @property
    def owners(self) -> np.ndarray:
        """The list of each row."""
        return np.repeat(np.arange(len(self)), np.diff(self.indptr))

    def kept(self, rows: np.ndarray) -> Lists:
        """Each list cut to the rows flagged in ``rows``; a chosen item it loses leaves its
        ideal too."""
        owners = self.owners
        indptr = np.zeros(len(self) + 1, np.int64)
        np.cumsum(np.bincount(owners[rows], minlength=len(self)), out=indptr[1:])
        lost = np.bincount(owners[~rows], weights=self.labels[~rows], minlength=len(self))
        return Lists(indptr, self.features[rows], self.labels[rows],
                     self.n_relevant - lost.astype(np.int64), self.users)

    def padded(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[len(users), longest, n_features]`` features, labels and a mask of real rows."""
        lengths = np.diff(self.indptr)[users]
        width = int(lengths.max(initial=1))
        mask = np.arange(width)[None, :] < lengths[:, None]
        positions = (self.indptr[users][:, None] + np.arange(width)[None, :])[mask]
        x = np.zeros((len(users), width, self.features.shape[1]), np.float32)
        y = np.zeros((len(users), width), np.float32)
        x[mask], y[mask] = self.features[positions], self.labels[positions]
        return x, y, mask


class NetworkShape(Protocol):
    """What :func:`build_network` reads of a configuration (the ranker's, the rating head's)."""

    @property
    def cross_layers(self) -> int: ...
    @property
    def hidden(self) -> tuple[int, ...]: ...
    @property
    def dropout(self) -> float: ...


def build_network(n_features: int, config: NetworkShape, prior: int = 0) -> Any:
    """An untrained DCN-v2 over ``n_features`` inputs (torch is imported here).

    It starts as the ranking of input ``prior`` (the sources' first answer): the network's own
    output layer starts at zero and the prior's weight at one, so training moves away from
    that source's ranking only as far as the lists reward, and early stopping keeps the best.
    """
    torch = torch_module()
    nn = torch.nn

    class DCN(nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("scale", torch.ones(n_features))
            self.cross = nn.ModuleList(nn.Linear(n_features, n_features)
                                       for _ in range(config.cross_layers))
            layers: list[Any] = []
            width = n_features
            for size in config.hidden:
                layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
                width = size
            self.deep = nn.Sequential(*layers)
            self.out = nn.Linear(n_features + width, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            self.register_buffer("prior", torch.tensor(prior))
            self.prior_weight = nn.Parameter(torch.ones(()))

        def forward(self, x: Any) -> Any:
            x0 = (x - self.mean) / self.scale
            crossed = x0
            for layer in self.cross:
                crossed = x0 * layer(crossed) + crossed
            learned = self.out(torch.cat([crossed, self.deep(x0)], dim=-1)).squeeze(-1)
            return learned + self.prior_weight * x0[..., self.prior]

    return DCN()


def _ndcg_at(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, n_relevant: np.ndarray,
             k: int = 10) -> np.ndarray:
    """nDCG@k of each padded list ordered by ``scores``; the ideal counts every chosen item."""
    scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    gains = np.take_along_axis(labels, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, order.shape[1] + 2))
    dcg = (gains * discounts).sum(axis=1)
    ideal = np.array([discounts[:min(int(n), k)].sum() for n in n_relevant])
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def list_ndcg(lists: Lists, scores: np.ndarray) -> np.ndarray:
    """nDCG@10 of each of ``lists`` ordered by ``scores`` (one per row of its features)."""
    padded, labels, mask = Lists(lists.indptr, scores[:, None], lists.labels,
                                 lists.n_relevant).padded(np.arange(len(lists)))
    return _ndcg_at(padded[..., 0], labels, mask, lists.n_relevant)


def validation_ndcg(lists: Lists, scores: np.ndarray) -> float:
    """Mean nDCG@10 of ``lists`` ordered by ``scores`` (one per row of its features)."""
    return float(list_ndcg(lists, scores).mean()) if len(lists) else 0.0


def clearly_better(lists: Lists, scores: np.ndarray, than: np.ndarray,
                   margin: float = 2.0) -> bool:
    """Whether ordering ``lists`` by ``scores`` beats ordering them by ``than`` by more than
    ``margin`` standard errors of the mean paired difference in nDCG@10.

    A validation carve of a hundred users measures nDCG@10 to about ±0.02: the best epoch of a
    ranker is partly the luckiest, and a network chosen for a gain inside that noise lost to
    its starting ranking on the test part (the demo's data). So the ranker takes over only on
    a difference the carve can tell from chance. A user's lists (one per device, per carve)
    are not independent draws: the gain is averaged per user first, where lists know theirs.
    """
    gain = list_ndcg(lists, scores) - list_ndcg(lists, than)
    if lists.users is not None and len(gain):
        _, owner = np.unique(lists.users, return_inverse=True)
        gain = np.bincount(owner, gain) / np.bincount(owner)
    if len(gain) < 2:
        return False
    return bool(gain.mean() > margin * gain.std(ddof=1) / np.sqrt(len(gain)))


def fit_ranker(train: Lists, validation: Lists, config: RankerConfig, device: Any,
               progress: ProgressCallback | None, prior: int = 0) -> tuple[Any, Epochs]:
    """A DCN trained on ``train``'s lists, stopped early on ``validation``'s nDCG@10,
    starting from the ranking of input column ``prior``, and back to that start unless the
    best epoch is :func:`clearly_better` than it."""
    torch = torch_module()
    network = build_network(train.features.shape[1], config, prior).to(device)
    mean = train.features.mean(axis=0)
    scale = train.features.std(axis=0)
    network.mean.copy_(torch.from_numpy(mean))
    network.scale.copy_(torch.from_numpy(np.where(scale > 1e-6, scale, 1.0)))
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    # Users none of whose chosen items were proposed teach nothing to a listwise loss.
    learners = np.flatnonzero(np.add.reduceat(train.labels, train.indptr[:-1])
                              * (np.diff(train.indptr) > 0) > 0)
    order_rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))

    def epoch() -> None:
        network.train()
        shuffled = order_rng.permutation(learners)
        for start in range(0, len(shuffled), config.users_per_batch):
            batch = shuffled[start:start + config.users_per_batch]
            x, y, mask = (torch.from_numpy(a).to(device) for a in train.padded(batch))
            logits = network(x).masked_fill(~mask, float("-inf"))
            log_p = torch.log_softmax(logits, dim=1).masked_fill(~mask, 0.0)
            loss = -((y * log_p).sum(dim=1) / y.sum(dim=1)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    def validate() -> float:
        return validation_ndcg(validation, ranker_scores(network, validation.features, device))

    start = {name: tensor.detach().clone() for name, tensor in network.state_dict().items()}
    epochs = train_epochs(network, epochs=config.epochs, patience=config.patience,
                          train=epoch, validate=validate if len(validation) else None,
                          progress=progress, description="training the hybrid's ranker",
                          validate_first=True)
    network.eval()
    if epochs.best >= 0 and not clearly_better(
            validation, ranker_scores(network, validation.features, device),
            validation.features[:, prior]):
        network.load_state_dict(start)  # the gain is inside the carve's noise
        epochs = Epochs(epochs.run, -1, epochs.scores)
    return network, epochs


def ranker_scores(network: Any, features: np.ndarray, device: Any,
                  block: int = 65_536) -> np.ndarray:
    """The network's score of each row of ``features``."""
    torch = torch_module()
    network.eval()
    out = np.empty(len(features), np.float32)
    with torch.no_grad():
        for start in range(0, len(features), block):
            x = torch.from_numpy(np.ascontiguousarray(features[start:start + block])).to(device)
            out[start:start + block] = network(x).cpu().numpy()
    return out

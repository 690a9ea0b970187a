"""The two-tower model's networks and loss, in PyTorch.

Imported only by :mod:`recengine.models.two_tower` when it trains or loads (torch is the
``neural`` extra: importing this module imports torch, which the server and the core models
never pay for).

- :class:`FeatureBag`: a row of sparse inputs (encoded features, and an id as one more input
  column, LightFM's way) times an embedding table, as padded index and weight arrays. Dropping
  an id is setting its weight to 0, so "known by features only" is the same network with one
  input fewer, the thing id dropout trains for.
- :class:`ItemTower` and :class:`UserTower`: an MLP over the item's bag; an MLP over the pooled
  bags of the user's recent items (mean, or attention), beside the user's own bag (features,
  optionally an id). Both end L2-normalised, so a score is a cosine.
- :func:`sampled_softmax_loss`: in-batch softmax with the log-Q correction of Yi et al. (2019)
  plus uniformly sampled negatives (mixed negative sampling, Yang et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureBag", "ItemTower", "UserTower", "mlp", "sampled_softmax_loss"]

#: Spread of the initial embeddings: small, so that early sums of many inputs stay small.
INIT_STD = 0.05


class FeatureBag(nn.Module):
    """Weighted sums of embeddings: ``Σ_j weight[r, j] · table[index[r, j]]`` per row ``r``.

    A sparse row times a dense table; padding is index 0 with weight 0.
    """

    def __init__(self, n_inputs: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max(n_inputs, 1), dim)
        nn.init.normal_(self.table.weight, std=INIT_STD)

    def forward(self, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (self.table(index) * weight.unsqueeze(-1)).sum(dim=1)


def mlp(n_in: int, layers: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    modules: list[nn.Module] = []
    for k, width in enumerate(layers):
        if k:
            modules.append(nn.ReLU())
        modules.append(nn.Linear(n_in, width))
        n_in = width
    return nn.Sequential(*modules)


class ItemTower(nn.Module):
    """An item's inputs (features and id) summed into one embedding, then an MLP."""

    def __init__(self, n_inputs: int, dim: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.bag = FeatureBag(n_inputs, dim)
        self.mlp = mlp(dim, layers)

    def inputs(self, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The items' input embeddings (what the user tower pools over a history)."""
        return self.bag(index, weight)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(inputs), dim=-1)


class UserTower(nn.Module):
    """The user's recent items' input embeddings pooled (mean or attention), beside the
    user's own inputs (features, id), then an MLP.

    ``n_inputs`` is 0 when the user has no inputs of their own: the history alone. Histories
    are given as (row, item) pairs into a table of item embeddings, and pooled as one sparse
    product: three times faster than gathering a padded ``[rows, length, dim]`` block and,
    above all, its gradient.
    """

    def __init__(self, n_inputs: int, dim: int, layers: Sequence[int], pooling: str) -> None:
        super().__init__()
        self.bag = FeatureBag(n_inputs, dim) if n_inputs else None
        self.attention = nn.Linear(dim, 1, bias=False) if pooling == "attention" else None
        self.mlp = mlp(dim * (2 if n_inputs else 1), layers)

    def pool(self, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
             n_rows: int) -> torch.Tensor:
        """Row ``rows[e]`` pools item embedding ``items[cols[e]]``: ``[n_rows, dim]``, an
        empty history pooling to zeros."""
        if self.attention is None:
            count = torch.zeros(n_rows, dtype=items.dtype, device=items.device)
            count = count.index_add(0, rows, torch.ones_like(rows, dtype=items.dtype))
            weights = 1.0 / count[rows]
        else:  # a softmax within each row
            logits = self.attention(items).squeeze(-1)[cols]
            top = torch.full((n_rows,), float("-inf"), dtype=items.dtype, device=items.device)
            top = top.scatter_reduce(0, rows, logits, reduce="amax")
            exp = torch.exp(logits - top[rows])
            total = torch.zeros(n_rows, dtype=items.dtype, device=items.device)
            weights = exp / total.index_add(0, rows, exp)[rows]
        pairs = torch.sparse_coo_tensor(torch.stack([rows, cols]), weights,
                                        (n_rows, len(items)), check_invariants=False)
        return torch.sparse.mm(pairs, items)

    def forward(self, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Unit vectors of ``len(index)`` users: histories as in :meth:`pool`, and each
        user's own inputs as ``index`` and ``weight`` rows."""
        parts = [self.pool(items, rows, cols, len(index))]
        if self.bag is not None:
            parts.append(self.bag(index, weight))
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)


def sampled_softmax_loss(users: torch.Tensor, positives: torch.Tensor, targets: torch.Tensor,
                         temperature: float, *, log_q: torch.Tensor | None = None,
                         negatives: torch.Tensor | None = None,
                         negative_ids: torch.Tensor | None = None,
                         negative_log_q: float = 0.0) -> torch.Tensor:
    """Mean softmax cross-entropy of each user's positive among the batch's positives and
    the sampled negatives.

    Row ``b``'s candidates are every positive of the batch (item ``targets[j]``) and every
    negative; logits are cosines over ``temperature``. The batch's positives are a sample drawn
    by popularity, so popular items are pushed down far more often than a full softmax would:
    ``log_q[j]`` (the log of the expected number of times item ``targets[j]`` is in a batch) is
    subtracted from their logits, the positive's included (Yi et al. 2019), and
    ``negative_log_q`` (log of ``negatives / n_items``, the uniform draw's) from the
    negatives'. A candidate that is the row's own item elsewhere in the batch or among the
    negatives (an accidental hit) is masked, not pushed down.
    """
    logits = users @ positives.T / temperature
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    rows = torch.arange(len(targets), device=targets.device)
    accidental = targets.unsqueeze(0) == targets.unsqueeze(1)
    accidental[rows, rows] = False
    logits = logits.masked_fill(accidental, float("-inf"))
    if negatives is not None and negative_ids is not None and len(negatives):
        extra = users @ negatives.T / temperature - negative_log_q
        extra = extra.masked_fill(negative_ids.unsqueeze(0) == targets.unsqueeze(1),
                                  float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    return F.cross_entropy(logits, rows)

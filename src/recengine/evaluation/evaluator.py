"""Evaluate several recommenders on one split: full-catalogue ranking, seen items excluded.

Every model is fitted on the same :class:`TrainingData`, asked for its top-K for every test user
(users held out of training are folded in from the history the split gives them), and scored
against the held-out pairs. No sampled negatives: each test item competes with the whole
catalogue. Every metric is reported overall and per user-activity group (light / medium / heavy).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from recengine.data.query import Queries
from recengine.data.splits import Split
from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.data.vocabulary import Vocabulary
from recengine.evaluation import metrics as m
from recengine.models.base import Recommender
from recengine.progress import ProgressCallback

__all__ = ["EvaluationResult", "ModelResult", "evaluate"]

#: Cut-offs at which the metric-against-k curves are drawn.
CURVE_KS = (1, 2, 3, 5, 10, 15, 20)
GROUPS = ("light", "medium", "heavy")



@dataclass
class ModelResult:
    """One model's metrics, overall and per activity group, and its timings."""

    name: str
    metrics: dict[str, float]
    by_activity: dict[str, dict[str, float]]
    fit_seconds: float
    recommend_seconds: float
    recommended: np.ndarray = field(repr=False)
    #: Each test user's value of every accuracy metric (``"ndcg@10"`` → one value a user, the
    #: evaluated users' order, the same for every model of a run): what paired comparisons read.
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class EvaluationResult:
    """The outcome of one evaluation run, ready for tables, JSON and plots."""

    ks: list[int]
    curve_ks: list[int]
    n_users: int
    n_items: int
    group_sizes: dict[str, int]
    models: dict[str, ModelResult]
    item_popularity: np.ndarray = field(repr=False)
    test_item_counts: np.ndarray = field(repr=False)
    n_users_train: int = 0
    description: dict[str, object] = field(default_factory=dict)

    def metrics_by_model(self) -> dict[str, dict[str, float]]:
        """``{model: {"precision@10": ..., "rmse": ...}}`` at the requested cut-offs only.

        The command line's JSON; the curves over every cut-off stay in :meth:`to_dict`.
        """
        wanted = {str(k) for k in self.ks}
        return {name: {key: v for key, v in r.metrics.items()
                       if "@" not in key or key.rsplit("@", 1)[1] in wanted}
                for name, r in self.models.items()}

    def paired(self, a: str, b: str, metric: str | None = None) -> m.PairedDifference:
        """Model ``a``'s lead over model ``b`` on ``metric`` (nDCG at the largest cut-off by
        default), with its paired bootstrap interval over the test users."""
        metric = metric or f"ndcg@{self.ks[-1]}"
        for name in (a, b):
            if name not in self.models:
                raise KeyError(f"no model {name!r} in this evaluation; it has "
                               f"{', '.join(self.models)}")
            if metric not in self.models[name].per_user:
                raise KeyError(f"no per-user {metric!r} for {name!r}; there are "
                               f"{', '.join(self.models[name].per_user)}")
        return m.paired_bootstrap(self.models[a].per_user[metric],
                                  self.models[b].per_user[metric])

    def against_best(self, metric: str | None = None) -> tuple[str, dict[str, m.PairedDifference]]:
        """The best model on ``metric`` (nDCG at the largest cut-off by default), and how far
        ahead of each other model it is, paired: is the table's winner a winner on other
        draws of the test users?"""
        metric = metric or f"ndcg@{self.ks[-1]}"
        scored = {name: r.metrics[metric] for name, r in self.models.items()
                  if np.isfinite(r.metrics.get(metric, np.nan))}
        if not scored:
            return "", {}
        best = max(scored, key=lambda name: scored[name])
        return best, {name: self.paired(best, name, metric) for name in scored
                      if name != best}

    def to_dict(self) -> dict[str, object]:
        metric = f"ndcg@{self.ks[-1]}"
        best, leads = self.against_best(metric)
        return {
            **self.description,
            "ks": self.ks,
            "users_evaluated": self.n_users,
            "items_in_catalogue": self.n_items,
            "activity_group_sizes": self.group_sizes,
            "models": {
                name: {"metrics": r.metrics, "by_activity": r.by_activity,
                       "fit_seconds": round(r.fit_seconds, 4),
                       "recommend_seconds": round(r.recommend_seconds, 4)}
                for name, r in self.models.items()
            },
            "paired": {"metric": metric, "best": best,
                       "lead_over": {name: d.to_dict() for name, d in leads.items()}},
        }


def _test_matrix(split: Split, data: TrainingData) -> tuple[np.ndarray, np.ndarray,
                                                             sp.csr_array, Queries | None]:
    """Evaluated users (training index, or -1 if held out), their ids, relevant items, and the
    held-out users' queries (from the history the split gives them)."""
    user_ids = np.asarray(split.test_users, dtype=object)
    local = Vocabulary(user_ids, name="user")
    rows = local.index(split.test["user_id"])
    cols = data.items.index(split.test["item_id"], missing="negative")
    keep = cols >= 0
    relevant = csr_from_pairs(rows[keep], cols[keep], np.ones(int(keep.sum())),
                              (len(user_ids), data.n_items))
    users = data.users.index(user_ids, missing="negative")
    history = (data.new_user_queries(split.given, user_ids) if split.given is not None
               else None)
    if history is None and (users < 0).any():
        # Users with no training pair and no given history cannot be scored: drop them.
        known = users >= 0
        return users[known], user_ids[known], relevant[known], None
    return users, user_ids, relevant, history


def evaluate(
    models: Mapping[str, Recommender],
    data: TrainingData,
    split: Split,
    *,
    ks: Sequence[int] = (10,),
    curve_ks: Sequence[int] = CURVE_KS,
    progress: ProgressCallback | None = None,
    prefitted: Collection[str] = (),
) -> EvaluationResult:
    """Fit each model on ``data`` (the split's training part) and measure it on the test part.

    Models named in ``prefitted`` were trained elsewhere (Spark, a GPU, another process) and
    are measured as they are, without a fit; their vocabularies may differ from ``data``'s
    (items and users are matched by id). When the split names ``candidates`` (the cold-item
    protocol's held-out items), every ranking is restricted to them, and each user's whole
    candidate ranking also gives an AUC.
    """
    users, _, relevant, history = _test_matrix(split, data)
    n_relevant = np.diff(relevant.indptr)
    scored = n_relevant > 0
    users, relevant, n_relevant = users[scored], relevant[scored], n_relevant[scored]
    if history is not None:
        history = history[scored]
    train_counts = (np.diff(history.bag.indptr) if history is not None
                    else data.user_counts()[users])
    groups = m.activity_groups(train_counts) if len(users) else np.array([], dtype=str)
    ks = sorted(set(ks))
    curve = sorted(set(curve_ks) | set(ks))
    depth = max(curve)
    cand_idx = None
    if split.candidates is not None:
        cand_idx = data.items.index(split.candidates, missing="negative")
        cand_idx = cand_idx[cand_idx >= 0]
        depth = max(depth, len(cand_idx))
    context = _Context(data, relevant, n_relevant, groups, ks, curve, split,
                       item_popularity=data.item_counts(), item_vectors=data.feedback.T.tocsr())
    results = {}
    for name, model in models.items():
        results[name] = _evaluate_one(name, model, data, users, history, depth, context,
                                      progress, cand_idx, refit=name not in prefitted)
    return EvaluationResult(
        ks=ks, curve_ks=curve, n_users=len(users), n_items=data.n_items,
        group_sizes={g: int((groups == g).sum()) for g in GROUPS}, models=results,
        item_popularity=data.item_counts(), test_item_counts=np.bincount(
            relevant.indices, minlength=data.n_items),
        n_users_train=data.n_users, description=dict(split.description))


@dataclass
class _Context:
    data: TrainingData
    relevant: sp.csr_array
    n_relevant: np.ndarray
    groups: np.ndarray
    ks: list[int]
    curve: list[int]
    split: Split
    item_popularity: np.ndarray
    item_vectors: sp.csr_array


def _evaluate_one(name: str, model: Recommender, data: TrainingData, users: np.ndarray,
                  history: Queries | None, depth: int, ctx: _Context,
                  progress: ProgressCallback | None,
                  candidates: np.ndarray | None, *, refit: bool = True) -> ModelResult:
    start = time.perf_counter()
    if refit:
        if progress:
            progress(f"fitting {name}", 0, 1)
        model.fit(data, progress=progress)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    recommended = _recommend_all(name, model, data, users, history, depth, progress,
                                 candidates)
    recommend_seconds = time.perf_counter() - start
    overall, per_user = _ranking_metrics(recommended, ctx, np.ones(len(users), dtype=bool),
                                         ctx.curve)
    if candidates is not None:
        overall["auc"] = _mean(m.auc(m.hits(recommended[:, :len(candidates)], ctx.relevant)))
        recommended = recommended[:, :max(ctx.curve)]
    by_group = {g: _ranking_metrics(recommended, ctx, ctx.groups == g, ctx.ks)[0]
                for g in GROUPS}
    if model.predicts_ratings and history is None:
        overall |= _rating_metrics(model, ctx.split)
    return ModelResult(name, overall, by_group, fit_seconds, recommend_seconds, recommended,
                       per_user={key: per_user[key] for key in per_user
                                 if key.rsplit("@", 1)[1] in {str(k) for k in ctx.ks}})


def _recommend_all(name: str, model: Recommender, data: TrainingData, users: np.ndarray,
                   history: Queries | None, depth: int,
                   progress: ProgressCallback | None, candidates: np.ndarray | None = None,
                   block: int = 2048) -> np.ndarray:
    """Every user's top ``depth`` in ``data``'s item indices (histories from ``data``)."""
    same = model.items_ == data.items and model.users_ == data.users
    out = np.empty((len(users), depth), dtype=np.int32)
    for start in range(0, len(users), block):
        stop = min(start + block, len(users))
        queries = (data.queries(users[start:stop]) if history is None
                   else history[start:stop])
        if same:
            out[start:stop], _ = model.recommend_queries(queries, depth, candidates=candidates)
        else:
            out[start:stop] = _recommend_translated(model, data, queries, depth, candidates)
        if progress:
            progress(f"recommending with {name}", stop, len(users))
    return out


def _recommend_translated(model: Recommender, data: TrainingData, queries: Queries, depth: int,
                          candidates: np.ndarray | None) -> np.ndarray:
    """Top ``depth`` of a model with vocabularies of its own: users and items matched by id,
    each history carried into the model's item indices, the answer brought back."""
    to_model = model.items_.index(data.items.ids, missing="negative")
    seqs = queries.sequences
    mapped = to_model[seqs.items]
    keep = mapped >= 0
    moved = replace(seqs.keep(keep), items=mapped[keep].astype(np.int32))
    known = queries.users >= 0
    users = np.full(len(queries), -1, dtype=np.int32)
    users[known] = model.users_.index(data.users.ids[queries.users[known]], missing="negative")
    asked = Queries(users, moved.bag(len(model.items_)), moved,
                    user_features=queries.user_features)
    cands = None
    if candidates is not None:
        cands = to_model[candidates]
        cands = cands[cands >= 0]
    idx, _ = model.recommend_queries(asked, depth, candidates=cands)
    back = data.items.index(model.items_.ids, missing="negative")
    found = np.where(idx >= 0, back[np.maximum(idx, 0)], -1)
    out = np.full_like(found, -1)
    for r, row in enumerate(found):  # items the data does not know are dropped, not holes
        valid = row[row >= 0]
        out[r, :len(valid)] = valid
    return out


def _ranking_metrics(recommended: np.ndarray, ctx: _Context, rows: np.ndarray,
                     ks: Sequence[int]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The means over ``rows``' users, and each user's value of the accuracy metrics."""
    if not rows.any():
        return {}, {}
    rec, rel, n_rel = recommended[rows], ctx.relevant[rows], ctx.n_relevant[rows]
    hit = m.hits(rec, rel)
    pop, n_train, vectors = ctx.item_popularity, ctx.data.n_users, ctx.item_vectors
    per_user: dict[str, np.ndarray] = {}
    beyond: dict[str, float | np.ndarray] = {}
    for k in ks:
        per_user |= {
            f"precision@{k}": m.precision_at_k(hit, k),
            f"recall@{k}": m.recall_at_k(hit, n_rel, k),
            f"ndcg@{k}": m.ndcg_at_k(hit, n_rel, k),
            f"map@{k}": m.average_precision_at_k(hit, n_rel, k),
            f"mrr@{k}": m.reciprocal_rank_at_k(hit, k),
            f"hit_rate@{k}": m.hit_rate_at_k(hit, k),
        }
        beyond |= {
            f"coverage@{k}": m.catalogue_coverage(rec, k, ctx.data.n_items),
            f"novelty@{k}": m.novelty_at_k(rec, k, pop, n_train),
            f"diversity@{k}": m.intra_list_diversity_at_k(rec, k, vectors),
            f"popularity@{k}": m.mean_popularity_at_k(rec, k, pop, n_train),
        }
    means = {key: _mean(v) for key, v in per_user.items()}
    return means | {key: _mean(v) for key, v in beyond.items()}, per_user


def _mean(value: float | np.ndarray) -> float:
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else (float(np.nanmean(arr)) if np.isfinite(arr).any()
                                             else float("nan"))


def _rating_metrics(model: Recommender, split: Split) -> dict[str, float]:
    rated = split.test[split.test["rating"].notna()]
    if rated.empty:
        return {}
    u = model.users_.index(rated["user_id"].astype(str), missing="negative")
    i = model.items_.index(rated["item_id"].astype(str), missing="negative")
    predicted = model.rating_indices(u, i)
    ok = np.isfinite(predicted)
    actual = rated["rating"].to_numpy(dtype=np.float64)[ok]
    return {"rmse": m.rmse(predicted[ok], actual), "mae": m.mae(predicted[ok], actual),
            "rated_pairs_predicted": float(ok.mean())}

"""Retrain on the newest data and replace the served model only when the new one is not worse.

Why a gate: a scheduled retrain runs unattended, and a new configuration, a bug or a shift in the
data can make a model worse. So each run holds out the most recent pairs (a time cutoff, or each
user's last ``n``), trains the configured models on the rest, scores them there, and publishes
and activates a new registry version only if the *primary* model (the first one configured)
scores at least ``current × (1 − tolerance)``.

What "current" is scored as — the design decision. The fair comparison is the one that changes
nothing but the model, so the current version's *configuration* (read from its manifest) is
re-trained on this run's training part and scored on this run's holdout. Its saved model is not
scored as it is, because

- it was trained on older data that may include this run's holdout pairs (it was refitted on
  everything it had), so it would be flattered by leakage;
- it does not know users and items that arrived since, so it would be penalised for them;
- the two scores would come from models that saw different data, mixing "better configuration"
  with "newer data".

The metrics stored in its manifest are not used either: they were measured on another holdout.
When the candidate's primary configuration equals the current one (the usual scheduled retrain),
the two scores are the same by construction and no second fit is needed. The price of this
choice: the gate compares configurations on today's data; it does not catch data that is bad for
every model alike (the manifests' data snapshots and metrics across versions show that).

A rejected candidate is not published at all: the registry holds only what may be served, and a
servable model needs the refit on all data below, which a rejected one is not worth. Its metrics
and the reason come back in :class:`RetrainResult` for the caller's log.

Training on Spark (``engine="spark"``): the events go to Spark (:mod:`recengine.spark.retrain`),
which weighs and aggregates them, carves the same holdout (:mod:`recengine.spark.splits`) and
scores the candidates there with the local metrics (:mod:`recengine.spark.evaluation`); every
WALS configuration is trained as ``spark-als``, WALS's model solved by MLlib's ALS on ``master``
(:mod:`recengine.models.spark_als`). The gate and the registry are this module's: a
Spark-trained candidate is judged like any other (:func:`judge_and_publish`), against the
current version's configuration re-trained on the same split.

After the gate passes, every configured model is re-trained on *all* pairs (holdout included),
so the served models have seen the newest events and share one vocabulary; the manifest keeps the
holdout metrics and says so in its notes. Datasets without timestamps cannot hold out "the newest"
pairs: they fall back to a stratified random holdout, with a note.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.schema import EventSchema
from recengine.data.training_data import TrainingData
from recengine.data.weighting import Weighting, aggregate
from recengine.errors import DataError, NotSupportedError
from recengine.evaluation.evaluator import evaluate
from recengine.models.base import Recommender
from recengine.models.registry import create_model
from recengine.models.retrieval import INDEX_MIN_ITEMS
from recengine.pipeline.prepare import Engine, Prepared, events_of, prepare, training_data
from recengine.progress import ProgressCallback
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["HOLDOUTS", "Plan", "RetrainResult", "Scorer", "Trial", "event_snapshot", "gate",
           "holdout_note", "judge_and_publish", "no_times_note", "on_engine", "on_spark_als",
           "retrain", "retrain_store"]

#: Holdouts a retrain can use: a global time cutoff, or each user's last ``n`` pairs.
HOLDOUTS = ("time", "last")


@dataclass(frozen=True)
class RetrainResult:
    """What one retrain did, and why.

    ``metrics`` are the candidates' holdout metrics (model name → metric → value);
    ``current_metrics`` the current version's primary configuration re-trained and scored on the
    same split (None on the first run). ``previous`` is the version active before the run.
    """

    version: str | None
    published: bool
    activated: bool
    reason: str
    metrics: dict[str, dict[str, float]]
    current_metrics: dict[str, float] | None
    previous: str | None = None
    notes: tuple[str, ...] = ()


def gate(candidate: float, current: float, *, metric: str = "ndcg@10", tolerance: float = 0.01,
         against: str = "current") -> tuple[bool, str]:
    """Whether ``candidate`` ≥ ``current × (1 − tolerance)``, and the sentence that says so.

    A candidate that is not a number never passes; a current score that is not a number cannot
    be beaten, so the candidate passes. ``against`` names the current model in the sentence.

    Examples
    --------
    >>> gate(0.3465, 0.35, tolerance=0.01)
    (True, 'ndcg@10 0.3465 ≥ current 0.3500 × 0.99 = 0.3465')
    >>> gate(0.31, 0.35)[0]
    False
    """
    if not math.isfinite(candidate):
        return False, f"candidate {metric} is {candidate}, not a number"
    if not math.isfinite(current):
        return True, f"{against} {metric} is {current}, not a number: nothing to beat"
    threshold = current * (1 - tolerance)
    passed = candidate >= threshold
    sign = "≥" if passed else "<"
    return passed, (f"{metric} {candidate:.4f} {sign} {against} {current:.4f} × "
                    f"{1 - tolerance:.2f} = {threshold:.4f}")


def event_snapshot(dataset: Dataset) -> dict[str, Any]:
    """What a version was trained on: event count, time range and a hash of the event table."""
    events = dataset.events
    digest = hashlib.sha256(pd.util.hash_pandas_object(events, index=False).to_numpy().tobytes())
    times = events["timestamp"]
    first, last = times.min(), times.max()
    return {"dataset": dataset.name, "count": len(events), "sha256": digest.hexdigest(),
            "min_timestamp": None if pd.isna(first) else first.isoformat(),
            "max_timestamp": None if pd.isna(last) else last.isoformat()}


#: The models that ``engine="spark"`` trains on Spark, as ``spark-als``.
_ON_SPARK = ("wals", "spark-als")


def on_engine(models: Mapping[str, Mapping[str, Any]], engine: Engine = "local",
              master: str = "local[2]") -> dict[str, dict[str, Any]]:
    """The models (name → config) to train on ``engine``: on Spark, each WALS configuration
    becomes ``spark-als`` on ``master``; every other model, and everything locally, as given.

    >>> on_engine({"wals": {"factors": 32}, "popularity": {}}, "spark", "local[2]")
    {'wals': {'factors': 32, 'model': 'spark-als', 'master': 'local[2]'}, 'popularity': {}}
    """
    if engine == "local":
        return {name: dict(config) for name, config in models.items()}
    return {name: ({**config, "model": "spark-als", "master": master}
                   if str(config.get("model", name)) in _ON_SPARK else dict(config))
            for name, config in models.items()}


def on_spark_als(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The names of ``models`` (as :func:`on_engine` gives them) that train on Spark as
    ``spark-als``: where they are, ALS needs its checkpoint folder.

    >>> on_spark_als(on_engine({"wals": {}, "popularity": {}}, "spark", "local[2]"))
    ['wals']
    """
    return [name for name, config in models.items() if config.get("model") == "spark-als"]


def retrain(
    dataset: Dataset | DataFrame,
    registry: ModelRegistry,
    *,
    models: Mapping[str, Mapping[str, Any]],
    holdout: str = "time",
    test_fraction: float = 0.1,
    last_n: int = 1,
    metric: str = "ndcg@10",
    tolerance: float = 0.01,
    ks: Sequence[int] = (10,),
    data_snapshot: Mapping[str, Any] | None = None,
    weighting: Weighting | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    index_min_items: int | None = INDEX_MIN_ITEMS,
    engine: Engine = "local",
    master: str = "local[2]",
    schema: EventSchema | None = None,
) -> RetrainResult:
    """Train ``models`` (name → config), gate the first against the active version, publish.

    A config may name its model class under ``"model"`` (default: the name itself), so two
    configurations of one class can sit side by side. ``holdout`` is ``"time"`` (the most recent
    ``test_fraction`` of the pairs) or ``"last"`` (each user's ``last_n`` most recent pairs).
    ``tolerance`` is relative; a negative one demands an improvement. ``data_snapshot`` goes into
    the manifest (default: :func:`event_snapshot` of the dataset). Published models with a
    vector form and at least ``index_min_items`` items carry their HNSW graph, so that a server
    loads it instead of building it (None: never). ``engine="spark"`` sends the events to
    Spark's ``master``, prepares, splits and scores them there and trains the WALS
    configurations there (:func:`recengine.spark.retrain.retrain_on_spark`); then ``dataset``
    may also be a Spark frame of events (:func:`recengine.spark.store.read_store`'s), of
    ``schema``'s event types, with its ``data_snapshot``.
    """
    plan = Plan(models, holdout, test_fraction, last_n, metric, tolerance, ks, seed, weighting,
                progress, index_min_items)
    if engine == "spark":
        from recengine.spark.retrain import retrain_on_spark, spark_events

        if isinstance(dataset, Dataset):
            data_snapshot = event_snapshot(dataset) if data_snapshot is None else data_snapshot
            schema, dataset = dataset.schema, spark_events(dataset, master)
        if data_snapshot is None:
            raise DataError("a retrain of a Spark frame of events needs its data_snapshot",
                            column="data_snapshot")
        return retrain_on_spark(dataset, registry, plan, master=master,
                                schema=schema or EventSchema(), data_snapshot=data_snapshot)
    if not isinstance(dataset, Dataset):
        raise DataError("a Spark frame of events is retrained with engine='spark'",
                        column="engine")
    notes: list[str] = []
    trial = _local_trial(dataset, plan, data_snapshot, notes)
    return judge_and_publish(trial, registry, on_engine(plan.models), plan, notes)


def _local_trial(dataset: Dataset, plan: Plan, snapshot: Mapping[str, Any] | None,
                 notes: list[str]) -> Trial:
    """The split carved here, scored by the local evaluator; all pairs built when asked."""
    prepared = _split(dataset, plan.holdout, plan.test_fraction, plan.last_n, plan.seed,
                      plan.weighting, notes)

    def score(models: Mapping[str, Recommender]) -> dict[str, dict[str, float]]:
        return evaluate(models, prepared.data, prepared.split, ks=plan.cutoffs,
                        progress=plan.progress).metrics_by_model()

    def full() -> TrainingData:
        return training_data(dataset, aggregate(dataset.events, dataset.schema, plan.weighting),
                             events=events_of(dataset, plan.weighting))

    return Trial(score, full, event_snapshot(dataset) if snapshot is None else snapshot)


def retrain_store(store: EventStore, registry: ModelRegistry, *, until_id: int,
                  **options: Any) -> RetrainResult:
    """:func:`retrain` (with ``options``) on ``store``'s events up to ``until_id``, their
    :meth:`~recengine.store.events.EventStore.snapshot` in the manifest.

    On Spark a PostgreSQL store is read by the executors over JDBC
    (:func:`recengine.spark.store.read_store`), never loaded here; a SQLite store, which only
    this machine can open, is loaded here and sent to Spark.
    """
    snapshot = store.snapshot(until_id=until_id)
    if options.get("engine") == "spark" and store.backend == "postgresql":
        from recengine.spark.session import spark_session
        from recengine.spark.store import read_store

        session = spark_session(options.get("master", "local[2]"),
                                feature="retrain --engine spark")
        events, _ = read_store(session, store.url, until_id=until_id)
        return retrain(events, registry, data_snapshot=snapshot, **options)
    return retrain(store.dataset(until_id=until_id), registry, data_snapshot=snapshot,
                   **options)


@dataclass(frozen=True)
class Plan:
    """What a retrain was asked to do (:func:`retrain`'s arguments), checked on creation."""

    models: Mapping[str, Mapping[str, Any]]
    holdout: str = "time"
    test_fraction: float = 0.1
    last_n: int = 1
    metric: str = "ndcg@10"
    tolerance: float = 0.01
    ks: Sequence[int] = (10,)
    seed: int = 0
    weighting: Weighting | None = None
    progress: ProgressCallback | None = None
    index_min_items: int | None = INDEX_MIN_ITEMS

    def __post_init__(self) -> None:
        _check(self.models, self.holdout, self.tolerance)

    @property
    def cutoffs(self) -> list[int]:
        """``ks`` plus the cut-off the gate's metric needs (``ndcg@20`` needs 20)."""
        _, at, k = self.metric.rpartition("@")
        return sorted({*self.ks, int(k)} if at and k.isdigit() else set(self.ks))


#: Fits each model on a run's training part and scores it on its holdout: name → metric →
#: value, the metrics at :attr:`Plan.cutoffs`.
Scorer = Callable[[Mapping[str, Recommender]], dict[str, dict[str, float]]]


@dataclass(frozen=True)
class Trial:
    """What the gate needs of a split, wherever it was carved: a scorer, all pairs for the
    refit of the models that pass (built only then), and the snapshot for the manifest."""

    score: Scorer
    full: Callable[[], TrainingData]
    snapshot: Mapping[str, Any]


def judge_and_publish(trial: Trial, registry: ModelRegistry,
                      models: Mapping[str, Mapping[str, Any]], plan: Plan,
                      notes: list[str]) -> RetrainResult:
    """Score ``models`` (name → config, on their engine) on the trial's holdout, gate the
    first against the active version, and publish and activate them when it passes."""
    candidates = {name: _build(name, config) for name, config in models.items()}
    metrics = trial.score(candidates)
    previous = registry.current()
    passed, verdict, current_metrics = _judge(trial.score, plan, registry, previous,
                                              candidates, metrics, notes)
    if not passed:
        return RetrainResult(None, False, False, f"{verdict}: kept {previous}", metrics,
                             current_metrics, previous, tuple(notes))
    version = _publish(registry, candidates, metrics, verdict, notes, trial, plan)
    registry.activate(version)
    reason = f"{verdict}: {version} replaces {previous}" if previous else (
        f"{verdict}: {version} activated")
    return RetrainResult(version, True, True, reason, metrics, current_metrics, previous,
                         tuple(notes))


def _check(models: Mapping[str, Mapping[str, Any]], holdout: str, tolerance: float) -> None:
    if not models:
        raise DataError("no models to retrain: pass at least one name → config", column="models")
    if holdout not in HOLDOUTS:
        raise DataError(f"unknown holdout {holdout!r}; choose one of {', '.join(HOLDOUTS)}",
                        column="holdout")
    if not tolerance < 1:
        raise DataError(f"tolerance must be below 1, got {tolerance}", column="tolerance")


def _split(dataset: Dataset, holdout: str, test_fraction: float, last_n: int, seed: int,
           weighting: Weighting | None, notes: list[str]) -> Prepared:
    """The holdout split; a stratified one, with a note, when events have no timestamps."""
    if dataset.has_timestamps:
        prepared = prepare(dataset, holdout, test_fraction=test_fraction, seed=seed,
                           last_n=last_n, weighting=weighting)
    else:
        notes.append(no_times_note(holdout, test_fraction))
        prepared = prepare(dataset, "stratified", test_fraction=test_fraction, seed=seed,
                           weighting=weighting)
    notes.append(holdout_note(prepared.split.description, len(prepared.split.test),
                              len(prepared.split.train)))
    return prepared


def no_times_note(holdout: str, test_fraction: float) -> str:
    """Why a retrain held out a stratified random part instead of ``holdout``."""
    return (f"the dataset has no timestamps, so its newest pairs are unknown: held out "
            f"a random {test_fraction:.0%} of each user's pairs (stratified split) "
            f"instead of the {holdout!r} holdout")


def holdout_note(description: Mapping[str, object], n_test: int, n_train: int) -> str:
    """The manifest's line on the holdout: the split as described, and its sizes."""
    described = ", ".join(f"{k}={v}" for k, v in description.items())
    return f"holdout: {described}; {n_test} pairs scored after training on {n_train}"


def _build(name: str, config: Mapping[str, Any]) -> Recommender:
    params = dict(config)
    return create_model(str(params.pop("model", name)), **params)


def _score(values: Mapping[str, float], metric: str, who: str) -> float:
    if metric not in values:
        found = ", ".join(sorted(values)) or "none: the holdout has no user to score"
        raise DataError(f"no metric {metric!r} for {who}; computed: {found}", column="metric")
    return float(values[metric])


def _same_model(a: Recommender, kind: str, config: Mapping[str, Any]) -> bool:
    return a.name == kind and a.config.model_dump(mode="json") == dict(config)


def _judge(score: Scorer, plan: Plan, registry: ModelRegistry, previous: str | None,
           candidates: dict[str, Recommender], metrics: dict[str, dict[str, float]],
           notes: list[str]) -> tuple[bool, str, dict[str, float] | None]:
    """The gate on the primary model: passed, why, and the current version's metrics."""
    primary = next(iter(candidates))
    value = _score(metrics[primary], plan.metric, primary)
    if previous is None:
        return True, "first version: nothing to compare with", None
    current = _current_metrics(score, registry, previous, candidates[primary],
                               metrics[primary], notes)
    passed, verdict = gate(value, _score(current, plan.metric, f"current {previous}"),
                           metric=plan.metric, tolerance=plan.tolerance,
                           against=f"current {previous}")
    return passed, verdict, current


def _current_metrics(score: Scorer, registry: ModelRegistry, version: str,
                     candidate: Recommender, candidate_metrics: dict[str, float],
                     notes: list[str]) -> dict[str, float]:
    """The current version's primary configuration, trained and scored on this run's split.

    When it is the candidate's own configuration, the candidate's metrics are the answer.
    """
    name, entry = next(iter(registry.show(version)["models"].items()))
    kind, config = entry["model"], entry["config"]
    label = f"{version}'s {name} ({kind})"
    if _same_model(candidate, kind, config):
        notes.append(f"gate: {label} has the candidate's configuration, so the same scores")
        return dict(candidate_metrics)
    baseline = create_model(kind, **config)
    notes.append(f"gate: {label} re-trained on the same training part and scored on the "
                 "same holdout")
    return score({label: baseline})[label]


def _publish(registry: ModelRegistry, models: dict[str, Recommender],
             metrics: dict[str, dict[str, float]], verdict: str, notes: list[str],
             trial: Trial, plan: Plan) -> str:
    """Re-train every model on all pairs (holdout included), index the large ones, and
    publish them, not activated."""
    full = trial.full()
    for name, model in models.items():
        model.fit(full, progress=plan.progress)
        if plan.index_min_items is not None and full.n_items >= plan.index_min_items:
            with contextlib.suppress(NotSupportedError):  # no vector form: served exactly
                model.build_index()
                notes.append(f"{name}: HNSW graph built over its {full.n_items} items")
    notes.append(f"gate: {verdict}")
    notes.append(f"after the gate every model was re-trained on all {full.feedback.nnz} pairs "
                 f"({full.n_users} users, {full.n_items} items), holdout included, so the served "
                 "models have seen the newest events; the metrics are those of the holdout run")
    return registry.publish(models, data=trial.snapshot, metrics=metrics,
                            notes="\n".join(notes), training=full)

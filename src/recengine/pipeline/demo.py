"""``recengine demo``: the whole path on synthetic vacation-rental data, as a new user sees it.

Generate a realistic event log → write it to files the way an export would look (with a few bad
rows, as real logs have) → ingest and validate them → split → train and evaluate every model →
print the comparison and a few users' recommendations with the reason for each → store the events
in a SQLite event store and publish the best model (with popularity as its fallback) to a model
registry, ready for ``recengine serve``, which the ``demo`` command then starts.

Everything goes under the output folder: ``data/`` (the exported files), ``report/``,
``recengine.db`` (the event store) and ``registry/``. The store and the registry are replaced on
every run, so they hold exactly this run's events and models.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from recengine.data.dataset import Dataset
from recengine.data.readers import read_events, read_metadata
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.data.validation import ValidationReport
from recengine.data.weighting import aggregate
from recengine.evaluation.evaluator import EvaluationResult, evaluate
from recengine.evaluation.report import print_table, write_report
from recengine.models.base import Recommender
from recengine.models.constraints import Catalog, relax
from recengine.models.knowledge import KnowledgeBased
from recengine.models.registry import MODELS
from recengine.pipeline.prepare import events_of, prepare, training_data
from recengine.progress import progress_bar
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["DemoResult", "print_try_it", "print_validation", "run_demo"]

#: Rows a real export might contain: a bad rating, a missing user, an unknown event type, a
#: timestamp from the future, an unparsable value, a device name too long (a user agent where
#: a device belongs), and a line with a missing field.
BAD_ROWS = (
    "u0,i0,rating,9,2025-03-01T10:00:00,mobile",
    ",i1,view,,2025-03-01T10:00:00,desktop",
    "u1,i1,like,1,2025-03-01T10:00:00,mobile",
    "u2,i2,view,,2099-01-01T00:00:00,mobile",
    "u3,i3,dwell,forty,2025-03-01T10:00:00,desktop",
    "u5,i5,view,,2025-03-01T10:00:00,"
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    "u4,i4,view",
)


def print_validation(report: ValidationReport, console: Console, *, shown: int = 10) -> None:
    """The ingest report: counts, problems by kind, and the first few bad rows."""
    console.print(f"[bold]{report.file}[/]: {report.rows_read} rows read, "
                  f"{report.rows_accepted} accepted, {report.rows_skipped} skipped",
                  highlight=False)
    if report.ok:
        return
    table = Table("problem", "rows", title="skipped rows by problem")
    for problem, count in sorted(report.counts().items(), key=lambda kv: -kv[1]):
        table.add_row(problem, str(count))
    console.print(table)
    for issue in report.issues[:shown]:
        console.print(f"  {issue}", markup=False, highlight=False)
    if report.rows_skipped > shown:
        console.print(f"  … and {report.rows_skipped - shown} more")


def _export(dataset: Dataset, folder: Path) -> dict[str, Path]:
    """Write events, items and users as CSV (lists joined by ``|``), plus a few bad rows."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"events": folder / "events.csv", "items": folder / "items.csv",
             "users": folder / "users.csv"}
    events = dataset.events.copy()
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    events.to_csv(paths["events"], index=False)
    with paths["events"].open("a") as handle:
        handle.write("\n".join(BAD_ROWS) + "\n")
    for name, table in (("items", dataset.items), ("users", dataset.users)):
        flat = table.copy()
        for column in flat.columns:
            if flat[column].map(lambda v: isinstance(v, list)).any():
                flat[column] = flat[column].map(lambda v: "|".join(map(str, v)))
        flat.index.name = "id"
        flat.to_csv(paths[name])
    return paths


def _ingest(dataset: Dataset, paths: dict[str, Path], console: Console) -> Dataset:
    events, report = read_events(paths["events"], schema=dataset.schema)
    print_validation(report, console)
    items, item_report = read_metadata(paths["items"], "id", dataset.item_features)
    users, user_report = read_metadata(paths["users"], "id", dataset.user_features)
    for extra in (item_report, user_report):
        print_validation(extra, console)
    return Dataset(name=dataset.name, events=events, items=items, users=users,
                   item_features=dataset.item_features, user_features=dataset.user_features,
                   schema=dataset.schema)


def _describe_history(model: Recommender, dataset: Dataset, user: str) -> str:
    """The user's most frequent labels in the first multi-valued or categorical feature."""
    seen = model.training_queries(model.users_.index([user])).bag.indices
    ids = model.items_.ids[seen]
    feature = next((f for f, k in dataset.item_features.items()
                    if k in (FeatureKind.MULTI, FeatureKind.CATEGORICAL)), None)
    if feature is None or not len(ids):
        return f"{len(ids)} items"
    top = dataset.items.loc[ids, feature].explode().value_counts().head(3)
    return f"{len(ids)} items, mostly " + ", ".join(f"{k} ({v})" for k, v in top.items())


@dataclass(frozen=True)
class DemoResult:
    """What the demo leaves behind: each model's metrics, and a store and registry to serve."""

    metrics: dict[str, dict[str, float]]
    #: The event store's URL (``sqlite:///<output>/recengine.db``).
    database_url: str
    #: The model registry's folder; ``version`` is active in it.
    registry: Path
    version: str
    #: A demo user with a history, and the first item recommended to them, for examples.
    user: str
    item: str


def run_demo(*, n_users: int = 3000, n_items: int = 1200, seed: int = 42,
             output: Path = Path("recengine-output/demo"),
             console: Console | None = None) -> DemoResult:
    """Run the demo, ending with its events stored and its best model published and active."""
    from recengine.data.synthetic import generate

    console = console or Console()
    console.rule("1. generate a synthetic vacation-rental event log")
    generated = generate(n_users=n_users, n_items=n_items, seed=seed)
    summary = generated.summary()
    console.print({k: v for k, v in summary.items()}, highlight=False)
    console.rule("2. ingest: read the exported files back, validating every row")
    dataset = _ingest(generated, _export(generated, output / "data"), console)
    console.rule("3. split (per-user stratified 75/25), train and evaluate every model")
    prepared = prepare(dataset, "stratified", test_fraction=0.25, seed=seed)
    models = {name: demo_model(name) for name in MODELS if name not in NOT_IN_DEMO}
    with progress_bar(console) as progress:
        result = evaluate(models, prepared.data, prepared.split, ks=[10], progress=progress)
    result.description |= {"dataset": "synthetic", "seed": seed}
    print_table(result, console, k=10)
    console.print(str(write_report(result, output / "report")), highlight=False, markup=False,
                  soft_wrap=True)
    _next_stay_step(dataset, seed, console)
    console.rule("4. recommendations, with the reason for each")
    best = max(result.models, key=lambda n: result.models[n].metrics.get("ndcg@10", 0.0))
    model = models[best]
    rng = np.random.default_rng(seed)
    users = rng.choice(model.users_.ids, size=min(3, len(model.users_)), replace=False)
    ids, scores = model.recommend(list(users), n=5)
    for user, row, row_scores in zip(users, ids, scores, strict=True):
        console.print(f"[bold]{user}[/] ({_describe_history(model, dataset, user)}) — "
                      f"top 5 by {best}:", highlight=False)
        items = [i for i in row if i is not None]
        for item, score, why in zip(items, row_scores, model.explain(user, items), strict=False):
            title = _title(dataset.items, item)
            console.print(f"   {item:<8} {score:8.4f}  {title}  — {why}", highlight=False,
                          markup=False)
    console.rule("5. knowledge-based: what a family needs, with relaxation when nothing fits")
    _knowledge_step(prepared.data, console)
    console.rule(f"6. store the events, publish {best} for serving")
    url, version = _publish(dataset, result, best, output, console)
    return DemoResult(metrics=result.metrics_by_model(), database_url=url,
                      registry=output / "registry", version=version, user=str(users[0]),
                      item=str(next(i for i in ids[0] if i is not None)))


#: Settings for the demo where a model's defaults are sized for real datasets: the whole demo
#: must reach serving in a few minutes on two cores (the neural models' epochs).
DEMO_SETTINGS: dict[str, dict[str, Any]] = {"sasrec": {"epochs": 6, "patience": 2},
                                            "two-tower": {"epochs": 6, "patience": 2},
                                            "hybrid": {"ranker": {"epochs": 10,
                                                                  "patience": 3}}}


#: Models the demo leaves out: spark-als trains on Spark, and the demo needs neither pyspark
#: nor Java (it is WALS's model: wals stands for it).
NOT_IN_DEMO = frozenset({"spark-als"})


def demo_model(name: str) -> Recommender:
    """A new model as the demo trains it: its defaults, with :data:`DEMO_SETTINGS`."""
    return MODELS[name](**DEMO_SETTINGS.get(name, {}))


def _next_stay_step(dataset: Dataset, seed: int, console: Console) -> None:
    """Where order matters: trips follow on from the previous stay, so the next stay is better
    predicted from the recent ones (markov, sasrec) than from the whole history as a bag
    (wals)."""
    console.rule("3b. the next stay: each traveller's last one, from the order of events")
    prepared = prepare(dataset, "last", last_n=1, seed=seed)
    models = {name: demo_model(name) for name in ("popularity", "wals", "markov", "sasrec")}
    with progress_bar(console) as progress:
        result = evaluate(models, prepared.data, prepared.split, ks=[10], progress=progress)
    print_table(result, console, k=10)


def _publish(dataset: Dataset, result: EvaluationResult, best: str, output: Path,
             console: Console) -> tuple[str, str]:
    """Store the events, items and users; publish ``best`` and popularity; the URL and version.

    The evaluated models saw only the training 75 %, while the store holds every event: served
    as they are, they would recommend items users already booked. So, as ``recengine retrain``
    does after its gate, the published models are refitted on all events; the manifest keeps
    the evaluation's metrics and says so. Popularity goes second: the server's fallback for
    users the best model cannot serve, after segment-popularity (new users known by their
    features).
    """
    database = output / "recengine.db"
    for stale in (database, database.with_name("recengine.db-wal"),
                  database.with_name("recengine.db-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(output / "registry", ignore_errors=True)
    url = f"sqlite:///{database}"
    with EventStore(url) as store:
        stored = store.append(dataset.events)
        store.upsert_items(dataset.items, kinds=dataset.item_features)  # dates, text: not guessed
        store.upsert_users(dataset.users, kinds=dataset.user_features)
        snapshot = store.snapshot()
    data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))
    names = list(dict.fromkeys([best, "segment-popularity", "popularity"]))
    with console.status(f"fitting {', '.join(names)} on all {stored.accepted} events"):
        fitted = {name: demo_model(name).fit(data) for name in names}
    registry = ModelRegistry(output / "registry")
    metrics = result.metrics_by_model()
    version = registry.publish(fitted, data=snapshot,
                               metrics={name: metrics[name] for name in names},
                               notes="recengine demo: refitted on all events; metrics from the "
                                     "stratified 75/25 evaluation")
    registry.activate(version)
    console.print(f"event store: {database} ({stored.accepted} events, {len(dataset.items)} "
                  f"items, {len(dataset.users)} users)\nmodel registry: {registry.root} "
                  f"({version} active: {', '.join(names)})", highlight=False, markup=False)
    return url, version


def print_try_it(result: DemoResult, console: Console, *, port: int, write_key: str,
                 serving: bool) -> None:
    """The commands to try the demo's server: curl for each kind of request, the docs and the
    console (with the write key, it posts events, uploads files and activates versions).

    Without ``serving``, first the ``recengine serve`` command that serves what the demo
    published (with ``write_key`` as its write key).
    """
    base = f"http://127.0.0.1:{port}"
    if serving:
        console.rule(f"7. serving on {base} (Ctrl-C stops); try:")
    else:
        console.rule("7. serve it, then try:")
        console.print(f"RECENGINE_WRITE_KEYS={write_key} recengine serve --port {port} "
                      f"--registry {result.registry} --database-url {result.database_url}",
                      markup=False, highlight=False, soft_wrap=True)
    event = json.dumps({"user_id": result.user, "item_id": result.item,
                        "event_type": "booking", "device": "mobile"})
    lines = [
        f"curl '{base}/v1/users/{result.user}/recommendations?k=5&explain=true'",
        f"curl '{base}/v1/users/{result.user}/recommendations?k=5&device=mobile'"
        "  # asked from a phone",
        f"curl '{base}/v1/items/{result.item}/similar?k=5'",
        f"curl '{base}/v1/items/{result.item}/audience?n=5'",
        f"curl -X POST {base}/v1/events -H 'Content-Type: application/json' "
        f"-H 'X-API-Key: {write_key}' -d '{event}'",
        "# ...then ask for the recommendations again: the booking counts at once",
        f"curl {base}/metrics",
        f"# the OpenAPI documentation, in a browser: {base}/docs",
        f"# the console, in a browser (users, their lists, items, models, data): {base}/console",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


#: A family's requirements: the seed's example of a knowledge-based query.
FAMILY = 'bedrooms >= 3 and price_per_night <= 200 and amenities has "pets allowed"'
TOO_MUCH = FAMILY + ' and amenities has "ski-in" and price_per_night <= 60'


def _knowledge_step(data: TrainingData, console: Console) -> None:
    catalog = Catalog.from_training_data(data)
    model = KnowledgeBased(constraint=FAMILY,
                           preferences='prefer 2: amenities has "hot tub"; 1: amenities has '
                                       '"wifi"').fit(data)
    console.print(f"query: {FAMILY}  →  {catalog.count(FAMILY)} rentals qualify", markup=False)
    ids, _ = model.recommend_history([], n=5)
    items = [i for i in ids if i is not None]
    for item, why in zip(items, model.explain_history([], items), strict=True):
        console.print(f"   {item:<8} {_title(data.item_features, item)}  — {why}",
                      markup=False, highlight=False)
    console.print(f"query: {TOO_MUCH}  →  {catalog.count(TOO_MUCH)} rentals; relax by:",
                  markup=False)
    for option in relax(catalog, TOO_MUCH)[:3]:
        console.print(f"   drop {' and '.join(option.dropped)}  →  {option.count} rentals",
                      markup=False, highlight=False)


def _title(items: pd.DataFrame, item: str) -> str:
    if "title" in items.columns and item in items.index:
        return str(items.at[item, "title"])
    return ""

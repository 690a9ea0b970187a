"""The ``recengine`` command line: demo, ingest, evaluate, train, recommend.

Human output goes to stdout, or to stderr when ``--json`` puts a machine-readable object on
stdout. Every error recengine raises on purpose becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from rich.console import Console
from rich.table import Table

from recengine.data.schema import EventSchema, FeatureKind
from recengine.errors import DataError, RecengineError
from recengine.progress import progress_bar

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from recengine.data.dataset import Dataset
    from recengine.data.training_data import TrainingData
    from recengine.data.validation import ValidationReport
    from recengine.models.base import Recommender
    from recengine.store.registry import ModelRegistry

__all__ = ["main"]

DEFAULT_REGISTRY = Path("recengine-output/registry")
#: Metrics `models list` shows per model.
LISTED_METRICS = ("precision@10", "ndcg@10")
DATASET_NAMES = ("synthetic", "movielens-100k", "movielens-latest-small", "lastfm-2k",
                 "amazon-gift-cards")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic", choices=DATASET_NAMES,
                   help="named dataset (default: synthetic)")
    p.add_argument("--path", type=Path, help="folder of a named real dataset")
    p.add_argument("--seed", type=int, default=42, help="seed for data generation and splits")


def _add_split_args(p: argparse.ArgumentParser) -> None:
    from recengine.data.splits import SPLITS

    p.add_argument("--split", default="stratified", choices=SPLITS,
                   help="stratified (per-user random), time (global cutoff), last (leave last n "
                        "out), users (held-out users, folded in)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="share of pairs (or of users, for --split users) held out")
    p.add_argument("--last-n", type=int, default=1, help="pairs per user for --split last")


def _add_event_file_args(p: argparse.ArgumentParser) -> None:
    """How an event file is read: its format, column mapping, default type and schema."""
    p.add_argument("--format", choices=("csv", "tsv", "parquet", "jsonl"),
                   help="default: from the file name")
    p.add_argument("--columns", default="",
                   help="column mapping, e.g. user_id=userId,item_id=movieId,value=rating")
    p.add_argument("--event-type", default="rating",
                   help="event type of rows without an event_type column")
    p.add_argument("--schema", type=Path, help="JSON file of event types (EventSchema)")


def _add_spark_conf_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting for the session, repeatable; a cluster needs "
                        "spark.checkpoint.dir=URL on storage every executor reaches")


def _add_engine_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--engine`` (``what`` it decides), ``--master`` and ``--spark-conf``."""
    p.add_argument("--engine", choices=("local", "spark"), default="local", help=what)
    p.add_argument("--master", default="local[2]",
                   help="Spark master for --engine spark and spark-als: local[N], "
                        "spark://HOST:PORT (default: local[2])")
    _add_spark_conf_arg(p)


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _kinds(text: str) -> dict[str, FeatureKind]:
    """``name=kind,...`` as feature name → :class:`FeatureKind`."""
    kinds = {}
    for part in _csv_list(text):
        name, _, kind = part.partition("=")
        try:
            kinds[name.strip()] = FeatureKind(kind.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: the kind must be one of {', '.join(FeatureKind)}") from None
    return kinds


def _k_list(text: str) -> list[int]:
    try:
        ks = [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes whole numbers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("--k must be at least 1")
    return ks


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from recengine.models.registry import MODELS

    parser = argparse.ArgumentParser(
        prog="recengine", description="Recommendations from event logs: ingest, evaluate, "
        "train and recommend.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="synthetic data end to end: ingest, train, evaluate, "
                          "recommend with reasons, then serve the best model over HTTP")
    demo.add_argument("--users", type=int, default=3000)
    demo.add_argument("--items", type=int, default=1200)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--output", type=Path, default=Path("recengine-output/demo"),
                      help="where the generated files, report, plots, event store and model "
                           "registry go")
    demo.add_argument("--port", type=int, default=8000,
                      help="serve on 127.0.0.1 at this port (default: 8000)")
    demo.add_argument("--no-serve", action="store_true",
                      help="stop once the models are published (print how to serve them)")

    ingest = sub.add_parser("ingest", help="validate an event file and report every bad row; "
                            "store it, and item or user metadata, in an event store")
    ingest.add_argument("file", type=Path, nargs="?",
                        help="the event file (optional when only metadata is stored)")
    _add_event_file_args(ingest)
    ingest.add_argument("--encoding", default="utf-8")
    ingest.add_argument("--strict", action="store_true",
                        help="stop at the first bad row, before anything is stored or written")
    ingest.add_argument("--allow-duplicates", action="store_true",
                        help="keep rows that repeat an event (same user, item, event type and "
                             "timestamp, no event id), within the file and in the store; by "
                             "default they are skipped, so ingesting a file again adds nothing")
    ingest.add_argument("--output", type=Path, help="write the valid events to this Parquet file")
    ingest.add_argument("--store", metavar="URL",
                        help="append the valid events to an event store (sqlite:///PATH or "
                             "postgresql+psycopg://...), committed chunk by chunk: durable once "
                             "the command returns, and a re-run after a crash adds only the rest")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    for side in ("items", "users"):
        ingest.add_argument(f"--{side}", type=Path, metavar="FILE",
                            help=f"{side[:-1]} metadata to upsert into --store: an id column "
                                 "plus features")
        ingest.add_argument(f"--{side[:-1]}-kinds", type=_kinds, default={}, metavar="KINDS",
                            help="each feature's kind, e.g. region=categorical,bedrooms=numeric,"
                                 "amenities=multi,available_from=date,title=text")
    ingest.add_argument("--id-column", default="id", help="the id column of --items and --users")

    evaluate = sub.add_parser("evaluate", help="compare recommenders on one split")
    _add_dataset_args(evaluate)
    _add_split_args(evaluate)
    evaluate.add_argument("--k", type=_k_list, default=[10], help="cut-off(s), e.g. 10 or 5,10")
    evaluate.add_argument("--models", type=_csv_list, default=["popularity", "random"],
                          help=f"comma-separated: {', '.join(MODELS)}, or import paths "
                               "package.module:Class")
    evaluate.add_argument("--saved", type=Path, action="append", default=[], metavar="DIR",
                          help="a model trained elsewhere and saved (its folder); measured "
                               "as it is, without a fit; repeatable")
    evaluate.add_argument("--config", type=Path, action="append", default=[],
                          help="a model's configuration (JSON from `recengine tune`); "
                               "repeatable; adds the model if --models lacks it")
    evaluate.add_argument("--json", action="store_true",
                          help="print one JSON object: model → metrics")
    evaluate.add_argument("--output", type=Path,
                          help="folder for results.json and plots (default: "
                               "recengine-output/evaluate-<dataset>)")

    tune = sub.add_parser("tune", help="search a model's hyper-parameters on a validation split "
                          "carved from the training data")
    _add_dataset_args(tune)
    _add_split_args(tune)
    tune.add_argument("--model", default="wals", help="model to tune (default: wals)")
    tune.add_argument("--metric", default="ndcg@10", help="validation metric to optimise")
    tune.add_argument("--trials", type=int, default=30, help="trial budget")
    tune.add_argument("--timeout", type=float, help="time budget in seconds")
    tune.add_argument("--set", type=_csv_list, action="extend", default=[],
                      metavar="KEY=VALUE,...", help="fixed parameters, e.g. "
                      "feedback=explicit,biases=true (repeatable: every --set counts)")
    tune.add_argument("--output", type=Path,
                      help="where to write the best config (default: "
                           "recengine-output/tuned-<model>-<dataset>.json)")

    train = sub.add_parser("train", help="train a model on a whole dataset or event file and "
                           "save it")
    _add_dataset_args(train)
    train.add_argument("--model", help=f"{', '.join(sorted(MODELS))}, or an import path "
                       "package.module:Class (default: popularity; spark-als with "
                       "--engine spark)")
    train.add_argument("--events", metavar="PATH|URL",
                       help="train on this event file (CSV, TSV, Parquet, JSON Lines; a folder "
                            "of them with --format), or on an event store by its URL "
                            "(postgresql+psycopg://...; read over JDBC with --engine spark), "
                            "instead of --dataset")
    _add_engine_args(train, "where --events are read, validated, weighted and aggregated: "
                            "here, or on Spark (the spark extra) with the same rules")
    _add_event_file_args(train)
    train.add_argument("--strict", action="store_true",
                       help="stop at the first bad row of --events")
    train.add_argument("--config", type=Path, help="model configuration JSON (overrides --model)")
    train.add_argument("--output", type=Path, required=True, help="folder to save the model in")
    train.add_argument("--no-histories", action="store_true",
                       help="spark-als with --engine spark: save no training histories beside "
                            "the model, so the pairs never come to this process (recommend "
                            "--history and publishing work; recommend --user and batch need "
                            "them)")

    retrain = sub.add_parser("retrain", help="train on the latest data, evaluate on the most "
                             "recent events, publish to the registry only if not worse")
    _add_dataset_args(retrain)
    retrain.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                         help=f"model registry folder (default: {DEFAULT_REGISTRY})")
    retrain.add_argument("--models", type=_csv_list, default=["wals"],
                         help="models to train; the first is the one the gate judges")
    retrain.add_argument("--config", type=Path, action="append", default=[],
                         help="a model's configuration (JSON from `recengine tune`)")
    retrain.add_argument("--holdout", choices=("time", "last"), default="time",
                         help="most recent pairs (time cutoff) or each user's last n")
    retrain.add_argument("--test-fraction", type=float, default=0.1)
    retrain.add_argument("--metric", default="ndcg@10")
    retrain.add_argument("--tolerance", type=float, default=0.01,
                         help="publish if the candidate >= current x (1 - tolerance)")
    retrain.add_argument("--store", metavar="URL",
                         help="train on an event store's events (sqlite:///PATH or "
                              "postgresql+psycopg://...) instead of --dataset; the manifest "
                              "records their snapshot")
    retrain.add_argument("--events", metavar="PATH",
                         help="train on an event file (CSV, TSV, Parquet, JSON Lines; on "
                              "Spark also a folder of them) instead of --dataset, validated "
                              "as `recengine train --events` does")
    _add_event_file_args(retrain)
    retrain.add_argument("--strict", action="store_true",
                         help="stop at the first bad row of --events")
    _add_engine_args(retrain, "where the events are weighed, aggregated, split and scored: "
                              "here, or on Spark (the spark extra; a PostgreSQL --store read "
                              "over JDBC), where WALS trains as spark-als")

    models = sub.add_parser("models", help="the model registry: list, show, activate, rollback")
    models.add_argument("action", choices=("list", "show", "activate", "rollback", "publish"))
    models.add_argument("version", nargs="*", help="for show and activate: the version; for "
                        "publish: saved model folders (trained anywhere), published as they "
                        "are, without a fit")
    models.add_argument("--activate", action="store_true", help="publish: activate it too")
    models.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    models.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="the HTTP API (settings from RECENGINE_* variables: "
                           "database_url, registry, read_keys, write_keys, ...)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1,
                       help="server processes answering alike (default: 1)")
    serve.add_argument("--registry", help="overrides RECENGINE_REGISTRY")
    serve.add_argument("--database-url", help="overrides RECENGINE_DATABASE_URL")

    batch = sub.add_parser("batch", help="on Spark: top-k for every user (and the audience "
                           "of every item) of a saved factor model, written to Parquet")
    batch.add_argument("--model-dir", type=Path, required=True)
    batch.add_argument("--k", type=_positive, default=10, help="items per user (default: 10)")
    batch.add_argument("--audience", type=_positive, metavar="N",
                       help="also the N users most likely to choose each item")
    batch.add_argument("--include-seen", action="store_true",
                       help="keep what each user already chose (excluded by default)")
    batch.add_argument("--output", type=Path, required=True,
                       help="folder for top-k.parquet (and audience.parquet)")
    batch.add_argument("--master", default="local[2]", help="Spark master (default: local[2])")
    _add_spark_conf_arg(batch)
    batch.add_argument("--json", action="store_true")

    rec = sub.add_parser("recommend", help="recommendations from a saved model")
    rec.add_argument("--model-dir", type=Path, required=True)
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=_csv_list, help="user id(s), comma-separated")
    who.add_argument("--history", type=_csv_list,
                     help="item ids of a new user (fold-in), comma-separated")
    who.add_argument("--similar", help="an item id: items similar to it")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recengine`` command."""
    args = build_parser().parse_args(argv)
    err = _console(stderr=True)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `recengine ... | head`: the reader left; not an error of ours
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except (RecengineError, OSError) as exc:
        # soft_wrap: one line however long, for scripts and CI logs that grep it
        err.print(f"error: {exc}", style="bold red", markup=False, highlight=False,
                  soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def _console(*, stderr: bool = False) -> Console:
    """A console; wide enough for the tables when output goes to a file or a CI log."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 132)


def _consoles(as_json: bool) -> tuple[Console, Console]:
    """(human console, stderr console): humans read stderr when stdout carries JSON."""
    err = _console(stderr=True)
    return (err if as_json else _console()), err


def _model_configs(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """``--models`` (default configs) and ``--config`` files (tuned ones) as name → config."""
    from recengine.pipeline.tune import read_config_file

    configs = dict(read_config_file(path) for path in args.config)
    return {name: configs.get(name, {}) for name in dict.fromkeys([*args.models, *configs])}


def run_demo(args: argparse.Namespace) -> int:
    import secrets

    from recengine.pipeline.demo import print_try_it
    from recengine.pipeline.demo import run_demo as demo

    if not args.no_serve:
        _check_port_free(args.port)  # before minutes of training, not after
    console = _console()
    result = demo(n_users=args.users, n_items=args.items, seed=args.seed, output=args.output,
                  console=console)
    write_key = "demo-" + secrets.token_urlsafe(12)  # the server's only write key
    print_try_it(result, console, port=args.port, write_key=write_key, serving=not args.no_serve)
    if args.no_serve:
        return 0
    return _serve({"registry": str(result.registry), "database_url": result.database_url,
                   "read_keys": "", "write_keys": write_key}, "127.0.0.1", args.port)


def _check_port_free(port: int) -> None:
    """Fail with a clear message when something already listens on 127.0.0.1:``port``."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DataError(f"port {port} on 127.0.0.1 is in use: pass another --port, or "
                            "--no-serve", column="--port") from None


def run_ingest(args: argparse.Namespace) -> int:
    from recengine.evaluation.report import json_text

    metadata = [(side, path, getattr(args, f"{side[:-1]}_kinds"))
                for side in ("items", "users") if (path := getattr(args, side)) is not None]
    if args.file is None and not metadata:
        raise DataError("give an event file, --items or --users", column="file")
    if metadata and not args.store:
        raise DataError("--items and --users are upserted into an event store: pass --store",
                        column="--store")
    summary: dict[str, object] = _ingest_events(args) if args.file is not None else {}
    for side, path, kinds in metadata:
        summary[side] = _ingest_metadata(args, side, path, kinds)
    if args.json:
        print(json_text(summary))
    return 0


def _ingest_events(args: argparse.Namespace) -> dict[str, object]:
    """Validate the event file chunk by chunk, storing and writing each chunk's valid events.

    Memory is bounded by a chunk, not the file, and each chunk is its own transaction in the
    store, so a server writing to it waits for a chunk, not the file. Events are identified by
    event id or, without one, by content (unless ``--allow-duplicates``), so running the same
    file again (after a crash midway, say) adds only what is missing. ``--strict`` reads the
    file once to check it before the pass that stores it: a bad row stores nothing.
    """
    from recengine.data.readers import iter_events
    from recengine.data.schema import EventSchema
    from recengine.data.validation import ColumnMapping, ValidationReport
    from recengine.pipeline.demo import print_validation
    from recengine.store import EventStore

    columns = ColumnMapping.parse(args.columns, default_event_type=args.event_type)
    schema = EventSchema.from_file(args.schema) if args.schema else EventSchema()

    def chunks() -> Iterator[tuple[pd.DataFrame, ValidationReport]]:
        return iter_events(args.file, format=args.format, columns=columns, schema=schema,
                           strict=args.strict, encoding=args.encoding,
                           allow_duplicates=args.allow_duplicates)

    if args.strict and (args.store or args.output):
        for _ in chunks():
            pass
    report = ValidationReport(str(args.file))
    stored = duplicates = 0
    with ExitStack() as stack:
        store = stack.enter_context(EventStore(args.store)) if args.store else None
        output = stack.enter_context(_parquet_output(args.output)) if args.output else None
        for events, chunk in chunks():
            report.extend(chunk)
            if output is not None:
                output(events)
            if store is not None:
                result = store.append(events, identify_by_content=not args.allow_duplicates)
                stored, duplicates = stored + result.accepted, duplicates + result.duplicates
    summary = report.to_dict()
    if args.store:
        summary |= {"stored": stored, "duplicates": duplicates}
    if not args.json:
        print_validation(report, _console())
        if args.output and report.rows_accepted:
            _console().print(f"{report.rows_accepted} valid events written to {args.output}")
        if args.store:
            _console().print(f"{stored} events stored durably in {args.store} ({duplicates} "
                             "stored before, skipped)", highlight=False)
    if not report.rows_accepted:
        raise DataError(_nothing_accepted(report), file=report.file)
    return summary


def _nothing_accepted(report: ValidationReport) -> str:
    """Why a file gave no event: it has no rows, or what was wrong with them."""
    if not report.rows_read:
        return "no events: the file has no rows"
    problems = ", ".join(f"{count} {problem}" for problem, count in report.counts().items())
    return f"no valid event in {report.rows_read} rows ({problems})"


@contextmanager
def _parquet_output(path: Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A function writing chunks of valid events to one Parquet file at ``path``.

    The file is written beside ``path`` and moved there once complete, so a run that fails
    midway leaves no half-written file (and an earlier one untouched); one with no event
    writes nothing.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(f"{path.name}.partial")
    writers: list[pq.ParquetWriter] = []

    def write(events: pd.DataFrame) -> None:
        if len(events) == 0:
            return
        schema = pa.schema([(name, _PARQUET_TYPES[name]) for name in events.columns])
        if not writers:
            path.parent.mkdir(parents=True, exist_ok=True)
            writers.append(pq.ParquetWriter(partial, schema))
        writers[0].write_table(pa.Table.from_pandas(events, schema=schema, preserve_index=False))

    complete = False
    try:
        yield write
        complete = True
    finally:
        for writer in writers:
            writer.close()
            if complete:
                partial.replace(path)
            else:
                partial.unlink()


#: Parquet types of the event columns, the same in every chunk (a chunk whose event ids are all
#: missing would otherwise have a column of nulls, and no later chunk could be appended).
_PARQUET_TYPES = {"user_id": "string", "item_id": "string", "event_type": "string",
                  "value": "double", "timestamp": "timestamp[s]", "event_id": "string"}


def _ingest_metadata(args: argparse.Namespace, side: str, path: Path,
                     kinds: dict[str, FeatureKind]) -> dict[str, object]:
    """Validate ``path`` (items or users) and upsert the valid rows, with their kinds.

    Streamed as events are (:func:`_ingest_events`): each chunk validated and upserted in its
    own transaction, so memory is bounded by a chunk and a server writing to the store waits
    for a chunk, not the file. Upserts are idempotent: a run cut short is finished by running
    it again. ``--strict`` checks the whole file in a first pass, so a bad row writes nothing.
    """
    from recengine.data.readers import iter_metadata
    from recengine.data.validation import ValidationReport
    from recengine.pipeline.demo import print_validation
    from recengine.store import EventStore

    if not kinds:
        raise DataError(f"--{side[:-1]}-kinds names no feature: say each feature's kind",
                        column=f"--{side[:-1]}-kinds")

    def chunks() -> Iterator[tuple[pd.DataFrame, ValidationReport]]:
        return iter_metadata(path, args.id_column, kinds, strict=args.strict,
                             encoding=args.encoding)

    if args.strict:
        for _ in chunks():
            pass
    report = ValidationReport(str(path))
    written = 0
    with EventStore(args.store) as store:
        upsert = store.upsert_items if side == "items" else store.upsert_users
        for frame, chunk in chunks():
            report.extend(chunk)
            written += upsert(frame, kinds)
    if not args.json:
        print_validation(report, _console())
        _console().print(f"{written} {side} upserted into {args.store}", highlight=False)
    return report.to_dict() | {"stored": written}


def run_evaluate(args: argparse.Namespace) -> int:
    from recengine.data.loaders import load_dataset
    from recengine.evaluation.evaluator import evaluate
    from recengine.evaluation.report import json_text, print_table, write_report
    from recengine.models.registry import create_model
    from recengine.pipeline.prepare import prepare

    human, err = _consoles(args.json)
    models = {name: create_model(name, **config) for name, config in _model_configs(args).items()}
    saved = {folder.name: _load_saved(folder) for folder in args.saved}
    models |= saved
    with err.status(f"loading {args.dataset}"):
        dataset, _ = load_dataset(args.dataset, args.path, seed=args.seed)
        prepared = prepare(dataset, args.split, test_fraction=args.test_fraction,
                           seed=args.seed, last_n=args.last_n)
    with progress_bar(err) as progress:
        result = evaluate(models, prepared.data, prepared.split, ks=args.k, progress=progress,
                          prefitted=tuple(saved))
    result.description |= {"dataset": args.dataset, "seed": args.seed}
    out_dir = args.output or Path("recengine-output") / f"evaluate-{args.dataset}"
    files = write_report(result, out_dir)
    if args.json:
        print(json_text(result.metrics_by_model(), indent=None))
    else:
        for k in args.k:
            print_table(result, human, k=k)
    err.print(str(files), highlight=False, markup=False, soft_wrap=True)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from recengine.data.loaders import load_dataset
    from recengine.data.weighting import aggregate
    from recengine.models.registry import create_model
    from recengine.pipeline.prepare import events_of, training_data
    from recengine.pipeline.tune import read_config_file

    console = _console()
    default = "spark-als" if args.engine == "spark" else "popularity"
    name, config = read_config_file(args.config) if args.config else (args.model or default,
                                                                        {})
    if name == "spark-als":
        config = {"master": args.master} | config
    model = create_model(name, **config)
    if args.engine == "spark" and args.events is None:
        raise DataError("--engine spark prepares event files: pass --events PATH",
                        column="--events")
    if args.no_histories and not (args.engine == "spark" and name == "spark-als"):
        raise DataError("--no-histories is for spark-als trained with --engine spark",
                        column="--no-histories")
    if args.engine == "spark" and name == "spark-als":
        return _train_on_spark(args, model, console)
    if args.events is not None:
        data = _file_training_data(args, console)
    else:
        with console.status(f"loading {args.dataset}"):
            dataset, _ = load_dataset(args.dataset, args.path, seed=args.seed)
            data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                                 events=events_of(dataset))
    with progress_bar(console) as progress:
        model.fit(data, progress=progress)
    model.save(args.output)
    data.save(Path(args.output) / TRAINING_DATA)  # the histories `recommend` excludes
    console.print(f"{name} trained on {data.feedback.nnz} pairs "
                  f"({data.n_users} users, {data.n_items} items); saved to {args.output}")
    return 0


def _train_on_spark(args: argparse.Namespace, model: Recommender, console: Console) -> int:
    """spark-als fitted from the pairs as they lie on Spark; the histories are collected
    for the folder after the fit (unless ``--no-histories``), never for it."""
    from recengine.data.training_data import TrainingData
    from recengine.models.spark_als import SparkALS
    from recengine.spark.prepare import pairs_to_pandas

    assert isinstance(model, SparkALS)
    _spark_first(args, "train --engine spark", als=True)
    pairs = _file_pairs(args, console).persist()
    try:
        n_pairs = pairs.count()
        with progress_bar(console) as progress:
            model.fit_frame(pairs, progress=progress)
        model.save(args.output)
        if not args.no_histories:
            TrainingData.from_interactions(pairs_to_pandas(pairs)).save(
                Path(args.output) / TRAINING_DATA)
    finally:
        pairs.unpersist()
    kept = "without histories" if args.no_histories else "with its histories"
    console.print(f"spark-als trained on {n_pairs} pairs ({len(model.users_)} users, "
                  f"{len(model.items_)} items) on Spark; saved to {args.output} {kept}")
    return 0


def _spark_first(args: argparse.Namespace, feature: str, *, als: bool) -> None:
    """The session started first, with ``--spark-conf`` (every Spark step then uses it); where
    ALS will train there, its checkpoint folder is checked at once, not after the data's
    preparation on the cluster."""
    from recengine.spark.session import spark_session

    session = spark_session(args.master, feature=feature,
                            conf=_key_values(args.spark_conf, "--spark-conf"))
    if als:
        from recengine.spark.als import ensure_checkpoints

        ensure_checkpoints(session.sparkContext)


def _file_pairs(args: argparse.Namespace, console: Console) -> DataFrame:
    """``--events`` prepared on Spark and left there, its validation report printed."""
    from recengine.pipeline.demo import print_validation
    from recengine.pipeline.prepare import spark_pairs
    from recengine.store.events import mask_url

    with console.status(f"preparing {mask_url(args.events)} on Spark"):
        pairs, report = spark_pairs(args.events, **_event_file_settings(args))
    print_validation(report, console)
    if pairs is None:
        raise DataError(_nothing_accepted(report), file=report.file)
    return pairs


def _event_file_settings(args: argparse.Namespace) -> dict[str, Any]:
    """How ``--events`` are read: ``--master``, ``--spark-conf``, ``--format``,
    ``--columns``, ``--event-type``, ``--schema`` and ``--strict``."""
    from recengine.data.validation import ColumnMapping

    return {"master": args.master, "spark_conf": _key_values(args.spark_conf, "--spark-conf"),
            "format": args.format,
            "columns": ColumnMapping.parse(args.columns, default_event_type=args.event_type),
            "schema": EventSchema.from_file(args.schema) if args.schema else EventSchema(),
            "strict": args.strict}


def _file_training_data(args: argparse.Namespace, console: Console) -> TrainingData:
    """``--events`` prepared by ``--engine``, its validation report printed."""
    from recengine.pipeline.demo import print_validation
    from recengine.pipeline.prepare import file_training_data
    from recengine.store.events import mask_url

    where = "on Spark" if args.engine == "spark" else "here"
    with console.status(f"preparing {mask_url(args.events)} {where}"):
        data, report = file_training_data(args.events, engine=args.engine,
                                          **_event_file_settings(args))
    print_validation(report, console)
    if data is None:
        raise DataError(_nothing_accepted(report), file=report.file)
    return data


def _key_values(pairs: list[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``; anything else names ``option``."""
    found = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"bad setting {pair!r}: use KEY=VALUE", column=option)
        found[key.strip()] = text
    return found


def _parse_settings(pairs: list[str]) -> dict[str, object]:
    """``["factors=32", "biases=true"]`` → typed values (JSON literals, else strings)."""
    settings: dict[str, object] = {}
    for key, text in _key_values(pairs, "--set").items():
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    return settings


def run_tune(args: argparse.Namespace) -> int:
    from recengine.data.loaders import load_dataset
    from recengine.models.registry import create_model
    from recengine.pipeline.prepare import carve_validation, prepare
    from recengine.pipeline.tune import require_optuna, tune, write_config_file

    console, err = _console(), _console(stderr=True)
    fixed = _parse_settings(args.set)
    create_model(args.model, **fixed)  # bad names and settings fail before any work,
    require_optuna()  # and so does a missing extra
    with err.status(f"loading {args.dataset}"):
        dataset, _ = load_dataset(args.dataset, args.path, seed=args.seed)
        outer = prepare(dataset, args.split, test_fraction=args.test_fraction, seed=args.seed,
                        last_n=args.last_n)
        inner = carve_validation(dataset, outer, args.split, test_fraction=args.test_fraction,
                                 seed=args.seed, last_n=args.last_n)
    with progress_bar(err) as progress:
        result = tune(args.model, inner.data, inner.split, fixed=fixed, metric=args.metric,
                      trials=args.trials, timeout=args.timeout, seed=args.seed,
                      progress=progress)
    out = args.output or Path("recengine-output") / f"tuned-{args.model}-{args.dataset}.json"
    write_config_file(result, out, {"dataset": args.dataset, "split": args.split,
                                    "seed": args.seed, "trials": len(result.trials)})
    console.print(f"best validation {result.metric} = {result.best_value:.4f} with "
                  f"{json.dumps(result.best_params)}", highlight=False)
    console.print(f"written to {out}; use it with: recengine evaluate --config {out}",
                  highlight=False)
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from recengine.data.loaders import load_dataset
    from recengine.pipeline.retrain import on_engine, on_spark_als, retrain, retrain_store
    from recengine.store.events import EventStore
    from recengine.store.registry import ModelRegistry

    console, err = _console(), _console(stderr=True)
    models = _model_configs(args)
    if args.engine == "spark":
        _spark_first(args, "retrain --engine spark",
                     als=bool(on_spark_als(on_engine(models, "spark", args.master))))
    options: dict[str, Any] = {
        "models": models, "holdout": args.holdout, "test_fraction": args.test_fraction,
        "metric": args.metric, "tolerance": args.tolerance, "seed": args.seed,
        "engine": args.engine, "master": args.master}
    registry = ModelRegistry(args.registry)
    if args.store is not None and args.events is not None:
        raise DataError("retrain reads --store or --events, not both", column="--events")
    if args.store is not None:  # its events up to its last id, as the scheduler takes them
        with EventStore(args.store) as store, progress_bar(err) as progress:
            result = retrain_store(store, registry, until_id=store.last_id(),
                                   progress=progress, **options)
    elif args.events is not None:
        source, snapshot, schema = _retrain_events(args, err)
        with progress_bar(err) as progress:
            result = retrain(source, registry, progress=progress, data_snapshot=snapshot,
                             schema=schema, **options)
    else:
        with err.status(f"loading {args.dataset}"):
            dataset = load_dataset(args.dataset, args.path, seed=args.seed)[0]
        with progress_bar(err) as progress:
            result = retrain(dataset, registry, progress=progress, **options)
    verdict = "published and activated " + str(result.version) if result.activated else (
        "not published")
    console.print(f"{verdict}: {result.reason}", markup=False, highlight=False)
    return 0


def _retrain_events(args: argparse.Namespace, err: Console,
                    ) -> tuple[Dataset | DataFrame, dict[str, Any] | None, EventSchema]:
    """``--events`` read and validated by ``--engine`` (on Spark: a frame that stays there,
    with its snapshot), the report printed on stderr (stdout is the verdict)."""
    from recengine.data.dataset import Dataset
    from recengine.data.readers import read_events
    from recengine.data.validation import ColumnMapping
    from recengine.pipeline.demo import print_validation

    schema = EventSchema.from_file(args.schema) if args.schema else EventSchema()
    how: dict[str, Any] = {
        "format": args.format, "schema": schema, "strict": args.strict,
        "columns": ColumnMapping.parse(args.columns, default_event_type=args.event_type)}
    if args.engine == "spark":
        from recengine.spark import prepare, retrain
        from recengine.spark.session import spark_session

        session = spark_session(args.master, feature="retrain --engine spark")
        events, report = prepare.read_events(session, args.events, **how)
        print_validation(report, err)
        if report.rows_accepted:
            return events, retrain.snapshot(events, report.file), schema
    else:
        local, report = read_events(args.events, **how)
        print_validation(report, err)
        if report.rows_accepted:
            return Dataset(report.file, local, schema=schema), None, schema
    raise DataError(_nothing_accepted(report), file=report.file)


def run_models(args: argparse.Namespace) -> int:
    from recengine.evaluation.report import json_text
    from recengine.store.registry import ModelRegistry

    registry = ModelRegistry(args.registry)
    if args.action in ("show", "activate") and len(args.version) != 1:
        raise DataError(f"models {args.action} needs one version", column="version")
    if args.action == "publish" and not args.version:
        raise DataError("models publish needs saved model folders", column="version")
    if args.action == "activate":
        registry.activate(args.version[0])
        answer: object = {"active": args.version[0]}
    elif args.action == "rollback":
        answer = {"active": registry.rollback()}
    elif args.action == "show":
        answer = registry.show(args.version[0])
    elif args.action == "publish":
        answer = _publish_saved(registry, [Path(v) for v in args.version], args.activate)
    else:
        answer = registry.list()
    if args.json or args.action == "show":
        print(json_text(answer))
    elif args.action == "list":
        table = Table("version", "active", "created", "models", "metrics")
        for m in cast("list[dict[str, Any]]", answer):  # registry.list()'s manifests
            metrics = "; ".join(f"{name}: " + ", ".join(
                f"{k} {values[k]:.4f}" for k in LISTED_METRICS if isinstance(values.get(k), float))
                for name, values in m.get("metrics", {}).items())
            table.add_row(m["version"], "*" if m.get("active") else "", m.get("created_at", ""),
                          ", ".join(m.get("models", {})), metrics)
        _console().print(table)
    else:
        _console().print(f"active: {answer['active']}")  # type: ignore[index]
    return 0


def run_serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("registry", args.registry),
                                   ("database_url", args.database_url)) if v}
    return _serve(overrides, args.host, args.port, args.workers)


def _serve(overrides: dict[str, Any], host: str, port: int, workers: int = 1) -> int:
    """Serve until stopped: settings from RECENGINE_* variables and ``overrides``, validated.

    Each of ``workers`` processes loads the served version and answers alike: they share the
    store and the registry, and hear each other's writes (serving/bell.py).
    """
    import os
    import shutil
    import tempfile

    # Before prometheus_client is imported: each process then keeps its metrics in files there,
    # and /metrics sums them. A fresh folder per run, unless the deployment names one (it must
    # then empty it between runs, or old counts are summed in).
    made = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="recengine-metrics-")
    import uvicorn
    from pydantic import ValidationError

    from recengine.serving import Settings

    try:
        Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(first["msg"], column=".".join(map(str, first["loc"]))) from None
    # The processes read their settings from the environment, as a deployment's would.
    os.environ.update({f"RECENGINE_{name.upper()}": str(value)
                       for name, value in overrides.items()})
    try:
        uvicorn.run("recengine.serving.app:served_app", factory=True, host=host, port=port,
                    workers=workers, http="recengine.serving.protocol:NoDelayH11",
                    log_level="info")
    finally:
        if made is not None:  # this run's metrics go with it
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(made, ignore_errors=True)
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from recengine.evaluation.report import json_text

    model = _load_saved(args.model_dir)
    if args.user and model.histories_ is None:
        raise DataError(f"{args.model_dir} holds no training histories (trained with "
                        "--no-histories): ask by --history ITEMS", column="--user")
    answers: list[dict[str, object]] = []
    if args.similar:
        ids, scores = model.similar_items(args.similar, args.k)
        answers.append({"item": args.similar, "similar": _ranked(ids, scores)})
    elif args.history:
        ids, scores = model.recommend_history(args.history, args.k)
        answers.append({"history": args.history, "items": _ranked(ids, scores)})
    else:
        all_ids, all_scores = model.recommend(args.user, args.k)
        for user, ids, scores in zip(args.user, all_ids, all_scores, strict=True):
            ranked = _ranked(ids, scores)
            reasons = model.explain(user, [r["item"] for r in ranked])
            for r, why in zip(ranked, reasons, strict=True):
                r["reason"] = why
            answers.append({"user": user, "items": ranked})
    if args.json:
        print(json_text(answers if len(answers) > 1 else answers[0], indent=None))
    else:
        console = _console()
        for answer in answers:
            head = {k: v for k, v in answer.items() if k not in ("items", "similar")}
            console.print(str(head), style="bold", markup=False, highlight=False)
            ranked_items = cast("list[_Ranked]", answer.get("items") or answer.get("similar") or [])
            for rank, r in enumerate(ranked_items, 1):
                why = f"  — {r['reason']}" if "reason" in r else ""
                console.print(f"{rank:>3}. {r['item']}  {r['score']:.4f}{why}", highlight=False)
    return 0


def run_batch(args: argparse.Namespace) -> int:
    from recengine.evaluation.report import json_text
    from recengine.spark.batch import write_audiences, write_top_k
    from recengine.spark.session import spark_session

    model = _load_saved(args.model_dir)
    session = spark_session(args.master, feature="batch jobs",
                            conf=_key_values(args.spark_conf, "--spark-conf"))
    exclude = not args.include_seen
    written = {"top-k": write_top_k(session, model, args.k, args.output / "top-k.parquet",
                                    exclude_seen=exclude)}
    if args.audience:
        written["audience"] = write_audiences(session, model, args.audience,
                                              args.output / "audience.parquet",
                                              exclude_seen=exclude)
    if args.json:
        print(json_text({"output": str(args.output), "rows": written}, indent=None))
    else:
        for name, rows in written.items():
            _console().print(f"{rows} rows written to {args.output / f'{name}.parquet'}",
                             highlight=False)
    return 0


def _publish_saved(registry: ModelRegistry, folders: list[Path],
                   activate: bool) -> dict[str, object]:
    """Publish saved models (trained here or elsewhere) as one version, without refitting.

    The first folder's training data (``train`` saves it beside the model) becomes the
    version's histories."""
    models = {folder.name: _load_saved(folder) for folder in folders}
    version = registry.publish(models, data={"source": [str(f) for f in folders]}, metrics={},
                               notes="published from saved models, without refitting")
    if activate:
        registry.activate(version)
    return {"published": version, "active": registry.current()}


#: Where ``train`` saves the training data beside the model (histories are not model state).
TRAINING_DATA = "training-data"


def _load_saved(folder: str | Path) -> Recommender:
    """A model saved by ``train`` (or ``save``), with the training data saved beside it."""
    from recengine.data.training_data import TrainingData
    from recengine.models.base import Recommender

    data = Path(folder) / TRAINING_DATA
    return Recommender.load(folder, histories=TrainingData.load(data) if data.is_dir()
                            else None)


class _Ranked(TypedDict):
    item: str
    score: float
    reason: NotRequired[str]


def _ranked(ids: object, scores: object) -> list[_Ranked]:
    return [{"item": str(i), "score": float(s)}
            for i, s in zip(ids, scores, strict=True) if i is not None]  # type: ignore[call-overload]


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": run_demo, "ingest": run_ingest, "evaluate": run_evaluate, "tune": run_tune,
    "train": run_train, "recommend": run_recommend, "retrain": run_retrain,
    "models": run_models, "serve": run_serve, "batch": run_batch,
}


if __name__ == "__main__":
    sys.exit(main())

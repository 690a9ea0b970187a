"""Scale: local WALS against MLlib ALS on Spark ``local[2]``, on synthetic logs of 1M–100M events.

What is measured (issue 14, target 2), per log size and engine, each run in its own process:

- **session start** (Spark): seconds to start ``local[2]`` (the JVM).
- **prepare**: seconds from the Parquet log to the aggregated pairs the solver takes (local:
  pyarrow and NumPy, then ``TrainingData`` with its vocabularies; Spark: ``groupBy`` of the
  file, cached and counted).
- **fit 1** and **fit N**: seconds of a fit with 1 and with ``--iterations`` sweeps; the time
  per iteration is their difference over ``N - 1``, so set-up, the first iteration's extras
  and collecting the factors cancel out. Each engine first fits a tiny problem untimed (numba's
  compilation; the JVM's class loading and JIT on 10,000 of the pairs).
- **peak RSS**: the process's high-water mark (``VmHWM``); for Spark, the Python driver plus
  the JVM (the driver with ``local[2]``'s executors inside it), read from ``/proc`` when the
  run ends. A JVM keeps its heap once grown, so its peak follows ``spark.driver.memory``
  (``--driver-memory``) as much as the data: read it as "what this run took", not the least
  it needs.

The logs: ``n`` events of ``n / 20`` users (lognormal activity, σ = 1) over ``n / 200`` items
(Zipf-like popularity, exponent 1.0 over ranks), user and item as int32 ids; written chunk by
chunk (``--chunk`` events) to one Parquet file, so generating 100M events needs a chunk's
memory, not the log's. The feedback of a pair is its number of events.

Matching settings: ``--factors`` (32), ``--iterations`` (3), implicit feedback, α = 10, λ = 60 as
WALS's default; MLlib gets what ``spark-als`` gives it (confidence share ``r / r̄``, ``regParam
= λ / n̄``: :mod:`recengine.models.spark_als`), with ``item_weight_exponent`` 0 on both sides.
WALS solves each row with 3 conjugate-gradient steps (its default), MLlib with Cholesky:
each engine as it ships.

Usage (the figures in docs/benchmarks.md, "Spark scale")::

    nice -n 5 python benchmarks/bench_spark_scale.py --sizes 1000000,10000000 \\
        --folder /tmp/recengine-scale --json /tmp/recengine-scale/results.jsonl

Serving at scale (the capacity plan, docs/scale.md): ``--hnsw 250000 --factors 64`` builds
recengine's HNSW graph (:class:`recengine.models.retrieval.ItemIndex`, its defaults) over that
many random unit vectors and prints the bytes it holds (the file it writes, and the
process's RSS growth), per item, and the build time.

One run: ``--run local|spark --log FILE`` prints one JSON line (what the parent collects).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Events per user and per item of a generated log (the mean).
EVENTS_PER_USER = 20
EVENTS_PER_ITEM = 200


def generate(path: Path, n_events: int, *, seed: int = 42, chunk: int = 5_000_000) -> None:
    """A synthetic log of ``n_events`` written chunk by chunk to ``path`` (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users, n_items = n_events // EVENTS_PER_USER, n_events // EVENTS_PER_ITEM
    activity = rng.lognormal(0.0, 1.0, n_users)
    user_cdf = np.cumsum(activity / activity.sum())
    popularity = 1.0 / np.arange(1, n_items + 1)
    item_cdf = np.cumsum(popularity / popularity.sum())
    item_ids = rng.permutation(n_items).astype(np.int32)  # popular items are not id 0, 1, ...
    schema = pa.schema([("user_id", pa.int32()), ("item_id", pa.int32())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_events, chunk):
            size = min(chunk, n_events - start)
            users = np.searchsorted(user_cdf, rng.random(size) * user_cdf[-1]).astype(np.int32)
            items = item_ids[np.searchsorted(item_cdf, rng.random(size) * item_cdf[-1])]
            writer.write_table(pa.table({"user_id": users, "item_id": items}, schema=schema))


def _peak_rss(pid: int | str = "self") -> int:
    """``VmHWM`` of a process in bytes (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children + [d for c in children for d in _descendants(c)]


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_local(log: Path, factors: int, iterations: int) -> dict[str, Any]:
    """Local WALS: pairs from the log, then fits of 1 and ``iterations`` sweeps."""
    import pyarrow.parquet as pq

    from recengine.data.training_data import TrainingData, csr_from_pairs
    from recengine.data.vocabulary import Vocabulary
    from recengine.models.wals import WALS

    def prepare() -> TrainingData:
        table = pq.read_table(log)
        users = table.column("user_id").to_numpy()
        items = table.column("item_id").to_numpy()
        del table
        user_ids, rows = np.unique(users, return_inverse=True)
        item_ids, cols = np.unique(items, return_inverse=True)
        del users, items
        keys = rows.astype(np.int64) * len(item_ids) + cols
        del rows, cols
        pairs, counts = np.unique(keys, return_counts=True)
        del keys
        shape = (len(user_ids), len(item_ids))
        feedback = csr_from_pairs((pairs // shape[1]).astype(np.int32),
                                  (pairs % shape[1]).astype(np.int32),
                                  counts.astype(np.float32), shape)
        del pairs, counts
        return TrainingData(users=Vocabulary(user_ids, name="user"),
                            items=Vocabulary(item_ids, name="item"), feedback=feedback,
                            ratings=_empty(shape))

    prepare_s, data = _timed(prepare)
    settings = {"factors": factors, "item_weight_exponent": 0.0, "num_threads": 2}
    WALS(factors=4, iterations=1).fit(_tiny())  # numba compiled (or loaded) before timing
    fit_1, _ = _timed(lambda: WALS(iterations=1, **settings).fit(data))
    fit_n, _ = _timed(lambda: WALS(iterations=iterations, **settings).fit(data))
    return {"prepare_s": prepare_s, "fit_1_s": fit_1, "fit_n_s": fit_n,
            "pairs": int(data.feedback.nnz), "users": data.n_users, "items": data.n_items,
            "peak_rss_bytes": _peak_rss()}


def run_spark(log: Path, factors: int, iterations: int, driver_memory: str) -> dict[str, Any]:
    """MLlib ALS on ``local[2]``: pairs aggregated on Spark, then fits of 1 and ``iterations``
    sweeps with ``spark-als``'s mapping of WALS's settings."""
    from pyspark.sql import functions as F

    from recengine.spark.als import AlsSettings, fit_als
    from recengine.spark.session import spark_session

    conf = {"spark.driver.memory": driver_memory, "spark.sql.shuffle.partitions": "8",
            "spark.default.parallelism": "8"}
    start_s, session = _timed(lambda: spark_session("local[2]", conf=conf))

    def prepare() -> tuple[Any, dict[str, Any]]:
        pairs = (session.read.parquet(str(log)).groupBy("user_id", "item_id")
                 .agg(F.count(F.lit(1)).cast("float").alias("count"))).persist()
        stats = pairs.agg(F.count(F.lit(1)), F.max("user_id"), F.max("item_id"),
                          F.mean("count"), F.countDistinct("user_id"),
                          F.countDistinct("item_id")).first()
        nnz, max_user, max_item, mean, n_users, n_items = stats
        frame = pairs.select(F.col("user_id").alias("user"), F.col("item_id").alias("item"),
                             (F.col("count") / F.lit(mean)).cast("float").alias("rating"))
        # λ over the mean pairs per user and item with pairs, as spark-als maps WALS's λ
        reg_param = 60.0 * (n_users + n_items) / (2 * nnz)
        return frame, {"pairs": int(nnz), "users": int(n_users), "items": int(n_items),
                       "reg_param": reg_param, "shape": (int(max_user) + 1, int(max_item) + 1)}

    prepare_s, (frame, found) = _timed(prepare)
    shape = found.pop("shape")

    def fit(n: int, pairs: Any = frame) -> None:
        settings = AlsSettings(rank=factors, iterations=n, reg_param=found["reg_param"],
                               implicit=True, alpha=10.0, seed=0, blocks=0)
        fit_als(pairs, settings, shape)

    fit(1, frame.limit(10_000))  # the JVM's first ALS (class loading, JIT) before timing
    fit_1, _ = _timed(lambda: fit(1))
    fit_n, _ = _timed(lambda: fit(iterations))
    jvm = sum(_peak_rss(pid) for pid in _descendants(os.getpid()))
    return {"session_start_s": start_s, "prepare_s": prepare_s, "fit_1_s": fit_1,
            "fit_n_s": fit_n, **found,
            "peak_rss_bytes": _peak_rss() + jvm, "python_peak_rss_bytes": _peak_rss(),
            "jvm_peak_rss_bytes": jvm, "driver_memory": driver_memory}


def run_hnsw(n_items: int, factors: int) -> dict[str, Any]:
    """Memory and build time of the serving graph over ``n_items`` vectors."""
    import tempfile

    from recengine.models.retrieval import ItemIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_items, factors), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    before = _rss()
    seconds, index = _timed(lambda: ItemIndex.build(vectors))
    grown = _rss() - before
    with tempfile.TemporaryDirectory() as folder:
        index.write(Path(folder) / "items.hnsw")
        size = (Path(folder) / "items.hnsw").stat().st_size
    return {"hnsw_items": n_items, "factors": factors, "build_s": seconds,
            "serialized_bytes": size, "rss_growth_bytes": grown,
            "bytes_per_item": size / n_items, "vector_bytes_per_item": factors * 4}


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _empty(shape: tuple[int, int]) -> Any:
    import scipy.sparse as sp

    return sp.csr_array(shape, dtype=np.float32)


def _tiny() -> Any:
    from recengine.data.training_data import TrainingData, csr_from_pairs
    from recengine.data.vocabulary import Vocabulary

    rows, cols = np.array([0, 0, 1, 2], np.int32), np.array([0, 1, 1, 2], np.int32)
    return TrainingData(users=Vocabulary(["a", "b", "c"]), items=Vocabulary(["x", "y", "z"]),
                        feedback=csr_from_pairs(rows, cols, np.ones(4, np.float32), (3, 3)),
                        ratings=_empty((3, 3)))


def _load() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews the times)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000",
                        help="log sizes in events, comma-separated")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/recengine-scale"))
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--hnsw", type=int, metavar="ITEMS",
                        help="measure the serving graph over this many items, then stop")
    parser.add_argument("--run", choices=("local", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hnsw:
        print(json.dumps(run_hnsw(args.hnsw, args.factors) | {"load": _load()}))
        return 0
    if args.run:
        result = (run_local(args.log, args.factors, args.iterations) if args.run == "local"
                  else run_spark(args.log, args.factors, args.iterations, args.driver_memory))
        print(json.dumps(result))
        return 0
    args.folder.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        log = args.folder / f"events-{size}.parquet"
        if not log.exists():
            seconds, _ = _timed(lambda log=log, size=size: generate(log, size))
            print(f"generated {size:,} events in {seconds:.1f} s: {log}", flush=True)
        for engine in args.engines.split(","):
            load_before = _load()
            started = time.perf_counter()
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--run", engine, "--log", str(log),
                     "--factors", str(args.factors), "--iterations", str(args.iterations),
                     "--driver-memory", args.driver_memory],
                    capture_output=True, text=True, timeout=args.timeout)
                failed = None if done.returncode == 0 else done.stderr.strip()[-2000:]
                result = json.loads(done.stdout.strip().splitlines()[-1]) if not failed else {}
            except subprocess.TimeoutExpired:
                failed, result = f"timed out after {args.timeout:.0f} s", {}
            n = args.iterations
            record = {"events": size, "engine": engine, "factors": args.factors,
                      "iterations": n, "wall_s": time.perf_counter() - started,
                      "load_before": load_before, "load_after": _load(), **result}
            if failed:
                record["failed"] = failed
            elif n > 1:
                record["per_iteration_s"] = (result["fit_n_s"] - result["fit_1_s"]) / (n - 1)
            print(json.dumps(record), flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`recengine ingest` of a large CSV: peak memory, and how long API-style writes wait meanwhile.

Generates an event CSV of `--megabytes` (200 by default: about 5 million rows of user, item,
type, rating and unix time, without event ids), then runs `recengine ingest FILE --store URL` in
a subprocess on an empty SQLite store (WAL, synchronous=FULL) and measures:

- peak RSS of the ingest process (`os.wait4`'s `ru_maxrss`), against the file's size;
- while it runs, a writer in this process appends one event (`EventStore.append`, as
  `POST /v1/events` does) every `--interval-ms` to the same store, and times each append: the
  wait for the database's write lock plus the durable commit. p50, p99 and the worst;
- then the same ingest again (`--rerun`): what it stores (nothing, the file being the same) and
  how long it takes.

    python benchmarks/bench_ingest.py --megabytes 200 --rerun
    python benchmarks/bench_ingest.py --megabytes 20 --keep /tmp/ingest-bench

The machine's other load shows in the times; the peak RSS does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.store import EventStore


def write_csv(path: Path, megabytes: float, seed: int = 0) -> int:
    """An event CSV of about ``megabytes`` MB (10^6 bytes); the number of rows."""
    rng = np.random.default_rng(seed)
    rows, block = 0, 200_000
    with path.open("w") as handle:
        handle.write("user_id,item_id,event_type,value,timestamp\n")
        while handle.tell() < megabytes * 1e6:
            frame = pd.DataFrame({
                "user_id": np.char.add("u", rng.integers(0, 1_000_000, block).astype(str)),
                "item_id": np.char.add("i", rng.integers(0, 100_000, block).astype(str)),
                "event_type": "rating",
                "value": rng.integers(1, 6, block),
                "timestamp": 1_600_000_000 + rows + np.arange(block),  # distinct: no duplicates
            })
            frame.to_csv(handle, header=False, index=False)
            rows += block
    return rows


def ingest(csv: Path, url: str, *, writer_interval: float | None) -> dict[str, object]:
    """Run the ingest in a subprocess; with ``writer_interval``, append alongside it."""
    command = [sys.executable, "-m", "recengine", "ingest", str(csv), "--store", url, "--json"]
    waits: list[float] = []
    done = threading.Event()
    writer = None if writer_interval is None else threading.Thread(
        target=_append_meanwhile, args=(url, writer_interval, waits, done))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        if writer is not None:
            writer.start()
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, in KiB
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        done.set()
        if writer is not None:
            writer.join()
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"ingest failed ({child.returncode}): {errors.read().strip()}")
    summary = json.loads(out)
    result: dict[str, object] = {"seconds": round(elapsed, 1), "stored": summary["stored"],
                                 "duplicates": summary["duplicates"],
                                 "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if waits:
        ms = np.asarray(waits) * 1000
        result |= {"appends": len(ms), "wait_p50_ms": round(float(np.percentile(ms, 50)), 1),
                   "wait_p99_ms": round(float(np.percentile(ms, 99)), 1),
                   "wait_max_ms": round(float(ms.max()), 1)}
    return result


def _append_meanwhile(url: str, interval: float, waits: list[float],
                      done: threading.Event) -> None:
    """Append one event every ``interval`` seconds until ``done``, timing each append."""
    with EventStore(url) as store:
        k = 0
        while not done.wait(interval):
            event = pd.DataFrame({"user_id": [f"api{k}"], "item_id": ["i1"],
                                  "event_type": ["view"], "value": [1.0],
                                  "timestamp": pd.Series([pd.Timestamp.now().floor("s")],
                                                         dtype="datetime64[s]")})
            start = time.perf_counter()
            store.append(event)
            waits.append(time.perf_counter() - start)
            k += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--interval-ms", type=float, default=50,
                        help="between the API-style appends during the ingest")
    parser.add_argument("--rerun", action="store_true", help="ingest the same file again")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv, db = folder / "events.csv", folder / "store.db"
    for path in folder.glob("store.db*"):  # with its WAL: an empty store
        path.unlink()
    rows = write_csv(csv, args.megabytes)
    size_mb = csv.stat().st_size / 1e6
    print(f"file: {size_mb:.1f} MB, {rows:,} rows", flush=True)
    url = f"sqlite:///{db}"
    EventStore(url).count()  # the tables exist before the writer starts
    first = ingest(csv, url, writer_interval=args.interval_ms / 1000)
    print(json.dumps({"ingest": first}), flush=True)
    if args.rerun:
        print(json.dumps({"rerun": ingest(csv, url, writer_interval=None)}), flush=True)
    if args.keep is None:
        for path in [csv, *folder.glob("store.db*")]:
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()

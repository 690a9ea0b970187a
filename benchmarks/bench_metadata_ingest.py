"""`recengine ingest --items`: peak memory of a large item table's ingest, by its size.

Generates an item CSV per `--rows` count (id; `region`, a categorical of 12 values; `price`, a
number; `tags`, three labels of 50 joined by `|`, multi-valued), then runs

    recengine ingest --items items.csv --item-kinds region=categorical,price=numeric,tags=multi \
        --store sqlite:///items.db --json

as a child process, into an empty SQLite store, and reports its peak RSS (`os.wait4`'s
`ru_maxrss`, the child's own), against the file's size, and its wall time (which the machine's
other load inflates; the peak RSS does not depend on it).

    python benchmarks/bench_metadata_ingest.py --rows 400000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REGIONS = np.array(["North", "South", "East", "West", "Coast", "Hills", "Lakes", "Plains",
                    "Forest", "Desert", "Island", "Valley"])
TAGS = np.array([f"tag{n:02d}" for n in range(50)])
KINDS = "region=categorical,price=numeric,tags=multi"


def write_items(path: Path, rows: int, seed: int = 0) -> None:
    """An item table of ``rows`` rows at ``path``, written a block at a time."""
    rng = np.random.default_rng(seed)
    block = 100_000
    with path.open("w") as handle:
        handle.write("id,region,price,tags\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            tags = rng.choice(TAGS, size=(n, 3))
            frame = pd.DataFrame({
                "id": [f"i{k:07d}" for k in range(start, start + n)],
                "region": rng.choice(REGIONS, n),
                "price": rng.gamma(2.0, 40.0, n).round(2),
                "tags": ["|".join(row) for row in tags],
            })
            frame.to_csv(handle, header=False, index=False)


def ingest(csv: Path, url: str) -> dict[str, object]:
    """`recengine ingest --items` in a child process: its report, peak RSS and time."""
    command = [sys.executable, "-m", "recengine", "ingest", "--items", str(csv),
               "--item-kinds", KINDS, "--store", url, "--json"]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, in KiB
        code = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        if code != 0:
            errors.seek(0)
            raise SystemExit(f"ingest failed ({code}): {errors.read().strip()}")
    return {"report": json.loads(out)["items"], "peak_rss_mb": usage.ru_maxrss / 1024,
            "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda text: [int(n) for n in text.split(",")],
                        default=[400_000, 100_000], help="table sizes, comma-separated")
    args = parser.parse_args()
    lines = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-metadata-") as tmp:
            csv = Path(tmp) / "items.csv"
            write_items(csv, rows)
            size_mb = csv.stat().st_size / 1e6
            result = ingest(csv, f"sqlite:///{Path(tmp) / 'items.db'}")
        report = result["report"]
        print(json.dumps({"rows": rows, "file_mb": round(size_mb, 1), **result}), flush=True)
        accepted = f"{report['stored']:,}" if isinstance(report, dict) else "?"
        lines.append(f"| {rows:,} | {size_mb:.1f} MB | {accepted} | "
                     f"**{result['peak_rss_mb']:.0f} MB** | "
                     f"{result['peak_rss_mb'] / size_mb:.0f}× | {result['seconds']:.0f} s |")
    print("| rows | CSV | rows stored | peak RSS | × file | wall time |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

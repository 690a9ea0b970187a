"""How fast the server starts, and what it holds when it is ready: this code against a baseline.

The baseline is another revision's ``src/`` (``--baseline``, any git revision), unpacked into a
temporary folder; both run on the same interpreter and packages, alternating run by run, so the
figures differ only by the code. For each:

- **import, wall:** ``python -c "import recengine.serving.app"`` in a fresh process, median of
  ``--runs``;
- **import, -X importtime:** the cumulative time Python's import profiler reports for
  ``recengine.serving.app`` (the profiler adds its own overhead: compare the two columns with
  each other, not with the wall time), median, and which heavy libraries the import loaded;
- **serve:** ``python -m recengine serve`` on a registry whose WALS model (with popularity) is
  active and a SQLite store holding its events: seconds from the process's start until
  ``/readyz`` answers 200, and the server's resident memory (VmRSS) at that moment, median. An
  untimed first start per tree fills numba's on-disk cache, as any deployment's first start does.

    python benchmarks/bench_startup.py --baseline 989f15c --runs 7
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity
from recengine.pipeline.prepare import training_data
from recengine.store import EventStore
from recengine.store.local_postgres import free_port
from recengine.store.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
#: Libraries that take long to import and that no request of the server needs.
HEAVY = ("matplotlib", "optuna", "sklearn", "torch", "sentence_transformers", "psycopg")
READY_SECONDS = 120
#: Where recengine came from (the tree asked for, not an installed copy), and every top-level
#: module the import loaded.
PROBE = ("import sys, recengine.serving.app; print(recengine.__file__); "
         "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")


@dataclass
class Tree:
    """One version of the code, and what was measured on it."""

    label: str
    src: Path
    wall: list[float] = field(default_factory=list)
    importtime: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    heavy: list[str] = field(default_factory=list)

    def env(self, **more: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.src), **more}


@contextlib.contextmanager
def baseline_tree(revision: str) -> Iterator[Path]:
    """``revision``'s ``src/`` in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "src"


def build(folder: Path, n_users: int, n_items: int) -> tuple[str, Path]:
    """A SQLite store with a synthetic log and a registry whose WALS version is active."""
    dataset = generate(n_users=n_users, n_items=n_items, seed=0)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    registry = ModelRegistry(folder / "registry")
    registry.activate(registry.publish({"wals": WALS().fit(data), "popularity":
                                        Popularity().fit(data)}, data={}, metrics={}))
    url = f"sqlite:///{folder / 'events.db'}"
    with EventStore(url) as store:
        store.append(dataset.events)
    return url, registry.root


def measure_import(tree: Tree) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE], env=tree.env(), capture_output=True,
                          text=True, check=True)
    tree.wall.append(time.perf_counter() - started)
    imported_from, modules = done.stdout.splitlines()
    if not imported_from.startswith(str(tree.src)):
        raise RuntimeError(f"{tree.label} imported recengine from {imported_from}")
    tree.heavy = sorted(set(modules.split()) & set(HEAVY))
    profiled = subprocess.run([sys.executable, "-X", "importtime", "-c",
                               "import recengine.serving.app"], env=tree.env(),
                              capture_output=True, text=True, check=True).stderr
    total = re.search(r"\|\s*(\d+) \| recengine\.serving\.app$", profiled, re.MULTILINE)
    if total is None:
        raise RuntimeError("no importtime line for recengine.serving.app")
    tree.importtime.append(int(total.group(1)) / 1e6)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(match.group(1)) / 1024


def measure_serve(tree: Tree, url: str, registry: Path, *, record: bool = True) -> None:
    port = free_port()
    env = tree.env(RECENGINE_DATABASE_URL=url, RECENGINE_REGISTRY=str(registry))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "recengine", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _ready(f"http://127.0.0.1:{port}"):
            if proc.poll() is not None or time.perf_counter() - started > READY_SECONDS:
                raise RuntimeError(f"{tree.label}: the server did not become ready")
            time.sleep(0.02)
        if record:
            tree.ready.append(time.perf_counter() - started)
            tree.rss.append(_rss_mib(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-world-") as tmp, \
            baseline_tree(args.baseline) as before_src:
        url, registry = build(Path(tmp), args.users, args.items)
        trees = [Tree(f"before ({args.baseline})", before_src), Tree("after", ROOT / "src")]
        for tree in trees:
            measure_serve(tree, url, registry, record=False)
        for _ in range(args.runs):
            for tree in trees:
                measure_import(tree)
                measure_serve(tree, url, registry)
    print(f"{args.runs} runs each, {args.users:,} users, {args.items:,} items, medians; "
          f"Python {sys.version.split()[0]}\n")
    print("| code | import wall s | -X importtime s | serve until /readyz s | RSS at ready MiB "
          "| heavy libraries imported |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for tree in trees:
        print(f"| {tree.label} | {statistics.median(tree.wall):.2f} "
              f"| {statistics.median(tree.importtime):.2f} | {statistics.median(tree.ready):.2f} "
              f"| {statistics.median(tree.rss):.0f} | {', '.join(tree.heavy) or 'none'} |")


if __name__ == "__main__":
    main()

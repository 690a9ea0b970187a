"""A soak: one `recengine serve` at about 80 % of its capacity for a long time, retraining.

Builds the world of bench_serving.py, starts the server with background retraining every
`--retrain-every` seconds (the active version's WALS and popularity, in a child process, gated
and hot-swapped), measures its capacity on the load below for 20 s, then keeps about 80 % of it
for `--minutes`, one wrk run per minute, and reads the server's resident memory every 5 s:

- the load: wrk's connections each send, in turn, a top-10 recommendations request for the next
  of 1,000 users and, every tenth request, one view event for that user (durable before the
  reply); each connection waits between requests so that together they send 80 % of the
  measured capacity (wrk's `delay()`);
- the figures: requests and failures (non-2xx answers and socket errors) per minute, p50 and p99
  latency, retrains run and versions published, and memory: the server's RSS at the start, the
  end and its maximum, and its slope over the soak's last two thirds, in MB per hour (what a day
  of this load would add). Live histories are bounded (`RECENGINE_LIVE_MAX_EVENTS`), so the
  slope should be flat.

Writes a table to stdout and the memory plot to `--plot` (default docs/soak-memory.png).

    python benchmarks/bench_soak.py --minutes 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench_serving import (
    WRITE_KEY,
    World,
    build,
    fill,
    lua_script,
    parse_wrk,
    serving,
)

#: One request in this many posts an event; the others ask for recommendations.
EVENT_EVERY = 10


def lua_mixed(world: World, delay_ms: float) -> Path:
    """Recommendations, an event every :data:`EVENT_EVERY` requests, ``delay_ms`` apart per
    connection."""
    event = ("'{\"user_id\":\"' .. u .. '\",\"item_id\":\"' .. items[(i % #items) + 1] .. "
             "'\",\"event_type\":\"view\"}'")
    items = ",".join(f'"{item}"' for item in world.items[:200])
    setup = (f"local items = {{{items}}}\n"
             f"delay = function() return {delay_ms:.3f} end\n")
    request = (f"if i % {EVENT_EVERY} == 0 then\n"
               f"    return wrk.format('POST', '/v1/events', {{['Content-Type'] = "
               f"'application/json', ['X-API-Key'] = '{WRITE_KEY}'}}, {event})\n  end\n"
               "  return wrk.format('GET', '/v1/users/' .. u .. '/recommendations?k=10')")
    return lua_script(world.folder, f"mixed-{delay_ms:.0f}", world.users, request, setup)


def run_wrk(base: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(["wrk", "-s", str(script), "-t2", f"-c{connections}",
                          f"-d{seconds}s", "--latency", base], capture_output=True, text=True,
                         timeout=seconds + 120, check=True).stdout
    return parse_wrk(out)


class MemoryProbe:
    """The RSS of a process (MB) and the version it serves, every ``every`` seconds, in a
    thread."""

    def __init__(self, pid: int, base: str, every: float = 5.0) -> None:
        self.pid, self.base, self.every = pid, base, every
        self.samples: list[tuple[float, float]] = []
        #: Minutes at which the served version changed.
        self.swaps: list[float] = []
        self._version: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            status = Path(f"/proc/{self.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("VmRSS:"))
            minute = (time.monotonic() - self._start) / 60
            self.samples.append((minute, kb / 1024))
            version = httpx.get(f"{self.base}/readyz", timeout=30).json().get("model_version")
            if self._version is not None and version != self._version:
                self.swaps.append(minute)
            self._version = version

    def __enter__(self) -> MemoryProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _server_pid(port_base: str) -> int:
    """The pid listening on the server's port (the uvicorn process)."""
    port = port_base.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of RSS over the last two thirds of the samples, MB per hour."""
    tail = samples[len(samples) // 3:]
    minutes, mb = np.array([t for t, _ in tail]), np.array([m for _, m in tail])
    return float(np.polyfit(minutes, mb, 1)[0] * 60) if len(tail) > 2 else float("nan")


def plot(samples: list[tuple[float, float]], retrains: list[float], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([t for t, _ in samples], [m for _, m in samples], lw=1.2, label="server RSS")
    for i, minute in enumerate(retrains):
        ax.axvline(minute, color="grey", ls=":", lw=0.8,
                   label="version published" if i == 0 else None)
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.8, help="of the measured capacity")
    parser.add_argument("--retrain-every", type=int, default=300, help="seconds")
    parser.add_argument("--plot", type=Path, default=Path("docs/soak-memory.png"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    print(f"```\npython benchmarks/bench_soak.py {' '.join(sys.argv[1:])}\n```\n")
    folder = Path(tempfile.mkdtemp(prefix="recengine-soak-"))
    try:
        world = build(folder, args.users, args.items, args.factors)
        url = f"sqlite:///{folder / 'events.db'}"
        fill(world, url)
        settings = {"RECENGINE_RETRAIN_EVERY_SECONDS": str(args.retrain_every)}
        with serving(world, url, settings) as base:
            full = run_wrk(base, 20, args.connections, lua_mixed(world, 0))
            rate = full["rps"] * args.share
            # Each connection waits so that together they send at most ``rate`` requests a
            # second (less by the time each request takes).
            delay = args.connections * 1000 / rate
            script = lua_mixed(world, delay)
            minutes: list[dict[str, float]] = []
            with MemoryProbe(_server_pid(base), base) as memory:
                for _ in range(args.minutes):
                    minutes.append(run_wrk(base, 60, args.connections, script))
                    print(f"minute {len(minutes)}: {minutes[-1]['rps']:.0f} rps, p99 "
                          f"{minutes[-1]['p99_ms']:.1f} ms, RSS {memory.samples[-1][1]:.0f} MB",
                          file=sys.stderr, flush=True)
            status = httpx.get(f"{base}/v1/models/retraining", timeout=30).json()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(args, full, minutes, memory, status)


def report(args: argparse.Namespace, full: dict[str, float], minutes: list[dict[str, float]],
           memory: MemoryProbe, status: dict[str, object]) -> None:
    samples = memory.samples
    requests = sum(m["requests"] for m in minutes)
    failures = sum(m["non_2xx"] + m["socket_errors"] for m in minutes)
    rss = [mb for _, mb in samples]
    slope = slope_mb_per_hour(samples)
    print(f"{args.items:,} items, {args.users:,} users, {args.factors} factors, SQLite; "
          f"wrk -t2 -c{args.connections}, one request in {EVENT_EVERY} posts an event; "
          f"retraining every {args.retrain_every} s.\n")
    print("| figure | value |\n|---|---:|")
    rows = [
        ("capacity on this load (20 s, no pause), requests/s", f"{full['rps']:.0f}"),
        (f"soak: {args.minutes} min at {args.share:.0%} of it, requests/s (mean of minutes)",
         f"{statistics.mean(m['rps'] for m in minutes):.0f}"),
        ("requests", f"{requests:,.0f}"),
        ("failures (non-2xx, socket errors)", f"{failures:,.0f}"),
        ("p50 / p99 latency, worst minute, ms",
         f"{max(m['p50_ms'] for m in minutes):.1f} / {max(m['p99_ms'] for m in minutes):.1f}"),
        ("retrains run / versions published",
         f"{status.get('runs')} / {status.get('published')}"),
        ("server RSS at start / end / max, MB", f"{rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f}"),
        ("RSS slope over the last two thirds, MB per hour", f"{slope:+.1f}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    plot(samples, memory.swaps, args.plot,
         f"server RSS during a {args.minutes}-minute soak at {args.share:.0%} of capacity, "
         f"retraining every {args.retrain_every} s")
    print(f"\nMemory plot: {args.plot}")


if __name__ == "__main__":
    main()

"""Load on one `recengine serve` process over loopback, measured with wrk (a real load generator).

Builds a synthetic catalogue (100,000 rentals by default), trains WALS (64 factors) on its log,
publishes it to a registry, stores the events in SQLite, starts `recengine serve` in a
subprocess, then measures, at a fixed concurrency:

- `/healthz`: the framework's ceiling on this machine;
- top-10 recommendations for rotating known users;
- event ingestion: single-event `POST /v1/events`, durable (SQLite, synchronous=FULL) before the
  reply;
- the post-then-fetch round trip (a user's new event, then their recommendations), p99.

    python benchmarks/bench_serving.py --items 100000 --users 20000

Requires Debian's `wrk` (`apt-get install wrk`). Every request loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity
from recengine.pipeline.prepare import training_data
from recengine.store import EventStore
from recengine.store.registry import ModelRegistry

WRITE_KEY = "bench-write-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(folder: Path, n_users: int, n_items: int, factors: int) -> tuple[str, list[str]]:
    """Registry + SQLite store in ``folder``; returns the database URL and some user ids."""
    started = time.perf_counter()
    dataset = generate(n_users=n_users, n_items=n_items, seed=0, mean_events_per_user=20)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    model = WALS(factors=factors, iterations=10).fit(data)
    registry = ModelRegistry(folder / "registry")
    version = registry.publish({"wals": model, "popularity": Popularity().fit(data)},
                               data={"events": len(dataset.events)}, metrics={})
    registry.activate(version)
    url = f"sqlite:///{folder / 'events.db'}"
    with EventStore(url) as store:
        store.append(dataset.events)
        store.upsert_items(dataset.items)
    print(f"built: {len(dataset.events):,} events, {data.n_users:,} users, {data.n_items:,} "
          f"items, {factors} factors in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return url, list(data.users.ids[:1000])


def serve(folder: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RECENGINE_DATABASE_URL": url,
           "RECENGINE_REGISTRY": str(folder / "registry"), "RECENGINE_WRITE_KEYS": WRITE_KEY}
    recengine = Path(sys.executable).with_name("recengine")
    proc = subprocess.Popen([str(recengine), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not become ready in 120 s")


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"],
            "non_2xx": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def lua_users(folder: Path, users: list[str]) -> Path:
    path = folder / "users.lua"
    quoted = ",".join(json.dumps(u) for u in users)
    path.write_text(f"local users = {{{quoted}}}\nlocal i = 0\nrequest = function()\n"
                    "  i = i + 1\n  local u = users[(i % #users) + 1]\n"
                    "  return wrk.format('GET', '/v1/users/' .. u .. '/recommendations?k=10')\n"
                    "end\n")
    return path


def lua_events(folder: Path, users: list[str]) -> Path:
    path = folder / "events.lua"
    quoted = ",".join(json.dumps(u) for u in users)
    path.write_text(
        f"local users = {{{quoted}}}\nlocal i = 0\n"
        "wrk.method = 'POST'\n"
        f"wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['X-API-Key'] = '{WRITE_KEY}'\n"
        "request = function()\n  i = i + 1\n  local u = users[(i % #users) + 1]\n"
        "  local body = '{\"user_id\":\"' .. u .. '\",\"item_id\":\"i00001\","
        "\"event_type\":\"view\"}'\n"
        "  return wrk.format(nil, '/v1/events', nil, body)\nend\n")
    return path


def round_trips(port: int, users: list[str], n: int, items: list[str]) -> list[float]:
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for k in range(n):
            user, item = users[k % len(users)], items[k % len(items)]
            start = time.perf_counter()
            client.post("/v1/events", json={"user_id": user, "item_id": item,
                                            "event_type": "booking"},
                        headers={"X-API-Key": WRITE_KEY}).raise_for_status()
            client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    print(f"```\npython benchmarks/bench_serving.py {' '.join(sys.argv[1:])}\n```\n")
    folder = Path(tempfile.mkdtemp(prefix="recengine-bench-"))
    try:
        url, users = build(folder, args.users, args.items, args.factors)
        port = free_port()
        proc = serve(folder, url, port)
        try:
            base = f"http://127.0.0.1:{port}"
            rows = {
                "/healthz": wrk(f"{base}/healthz", args.seconds, args.connections),
                "top-10 recommendations": wrk(base, args.seconds, args.connections,
                                              lua_users(folder, users)),
                "POST /v1/events (1 event, durable)": wrk(base, args.seconds, args.connections,
                                                          lua_events(folder, users)),
            }
            trips = round_trips(port, users, 300, [f"i{i:05d}" for i in range(2, 400)])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(f"One server process, wrk -t2 -c{args.connections} -d{args.seconds}s, "
              f"{args.items:,} items, {args.factors} factors, SQLite.\n")
        print("| endpoint | requests/s | p50 ms | p99 ms | non-2xx |\n|---|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['non_2xx']} |")
        ratio = rows["top-10 recommendations"]["rps"] / rows["/healthz"]["rps"]
        print(f"\nRecommendations reach {ratio:.0%} of /healthz throughput.")
        print(f"Post an event, then fetch that user's recommendations (300 sequential round "
              f"trips): p50 {np.percentile(trips, 50):.2f} ms, p99 "
              f"{np.percentile(trips, 99):.2f} ms.")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Load on one `recengine serve` process over loopback, measured with wrk (a real load generator).

Builds a synthetic catalogue (100,000 rentals by default), trains WALS (64 factors) on its log,
publishes it to a registry, stores the events in SQLite (and in a throwaway PostgreSQL server
on loopback, `recengine.store.local_postgres`, fsync on), starts `recengine serve` in a
subprocess per store, then measures, at a fixed concurrency:

- read: `/healthz` (the framework's ceiling on this machine) and top-10 recommendations for 1,000
  rotating known users, on the default server (answers kept per user until their history or the
  model changes) and on a second server with `RECENGINE_CACHE_USERS=0` (every answer computed:
  the HNSW graph over the 100,000 items). On each server the two alternate for `--rounds`
  rounds, and each round gives the ratio of their throughputs: the machine's speed drifts by
  10 % and more between runs, and a ratio taken within a round cancels most of that drift;
- swap: the recommendations load again, while the benchmark publishes a second registry version
  and alternately activates it and rolls back (`POST /v1/models/{version}/activate`,
  `POST /v1/models/rollback`): failed requests (non-2xx, socket errors), the swaps a probe saw in
  the served `model_version`, and the probe's latency around the swaps;
- ingestion: `POST /v1/events`, one event per request and batches of 100, each durable before
  the reply (SQLite synchronous=FULL; PostgreSQL with fsync and synchronous_commit on), per store;
- roundtrip: a user's new event, then their recommendations, sequentially, p99, per store;
- workers: the cache-off read again, on `recengine serve --workers 1` and `--workers 2` (each
  against its own `/healthz`): what a second process adds on this machine;
- retrain: a server started with `RECENGINE_RETRAIN_AFTER_EVENTS` (on SQLite, over a copy of the
  registry) under the recommendations load; the benchmark posts that many events, the server
  retrains the active version's models and configurations in the background and hot-swaps the
  result: failed requests, latency, the runs and versions published, and the version a probe saw.

    python benchmarks/bench_serving.py --items 100000 --users 20000
    python benchmarks/bench_serving.py --items 20000 --seconds 5 --only ingestion,swap
    python benchmarks/bench_serving.py --items 100000 --users 20000 --seconds 45 --only retrain
    python benchmarks/bench_serving.py --items 100000 --users 20000 --only workers

Requires Debian's `wrk` (`apt-get install wrk`); PostgreSQL rows need `postgresql` (else they
are left out, saying so). Every request loop is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity
from recengine.models.base import Recommender
from recengine.models.retrieval import INDEX_MIN_ITEMS
from recengine.pipeline.prepare import training_data
from recengine.store import EventStore, local_postgres
from recengine.store.registry import ModelRegistry

WRITE_KEY = "bench-write-key-16"
SECTIONS = ("read", "swap", "ingestion", "roundtrip", "retrain", "workers")
STORES = ("sqlite", "postgresql")
#: Events per request in the batched ingestion rows.
BATCH = 100
#: Bounds on anything that waits: a server becoming ready, one swap (it loads a model, which may
#: build an index), one probe request, one round-trip series, one background retrain (two fits,
#: the gate's evaluation and the swap).
READY_SECONDS = 180
SWAP_SECONDS = 600
CALL_SECONDS = 60
ROUND_TRIP_SECONDS = 120
RETRAIN_SECONDS = 1800


@dataclass
class World:
    """What every measurement shares: the registry, the data to store, ids to request."""

    folder: Path
    registry: ModelRegistry
    models: dict[str, Recommender]
    events: pd.DataFrame  # stored once per backend
    items_frame: pd.DataFrame
    users: list[str]
    items: list[str]


#: The served WALS: the same configuration in every session's runs (session 3's defaults), so
#: that its figures compare across sessions.
SERVED = {"iterations": 10, "regularization": 30.0, "alpha": 1.0, "item_weight_exponent": 0.0,
          "confidence": "raw"}


def build(folder: Path, n_users: int, n_items: int, factors: int) -> World:
    """Generate, train and publish (active) version 1; the data is stored per backend later.

    As a training run would, it saves the HNSW graph with a large catalogue's WALS model.
    """
    started = time.perf_counter()
    dataset = generate(n_users=n_users, n_items=n_items, seed=0, mean_events_per_user=20)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    models: dict[str, Recommender] = {"wals": WALS(**SERVED, factors=factors).fit(data),
                                      "popularity": Popularity().fit(data)}
    if data.n_items >= INDEX_MIN_ITEMS:
        models["wals"].build_index()
    registry = ModelRegistry(folder / "registry")
    registry.activate(registry.publish(models, data={"events": len(dataset.events)}, metrics={}))
    print(f"built: {len(dataset.events):,} events, {data.n_users:,} users, {data.n_items:,} "
          f"items, {factors} factors in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return World(folder, registry, models, dataset.events, dataset.items,
                 [str(u) for u in data.users.ids[:1000]], [str(i) for i in data.items.ids[:1000]])


def fill(world: World, url: str) -> None:
    """Store the world's events and items (one transaction each) at ``url``."""
    started = time.perf_counter()
    with EventStore(url) as store:
        store.append(world.events)
        store.upsert_items(world.items_frame)
        backend = store.backend
    print(f"stored in {backend} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


@contextlib.contextmanager
def serving(world: World, url: str, settings: Mapping[str, str] | None = None,
            workers: int = 1) -> Iterator[str]:
    """``recengine serve --workers`` (the CLI, BLAS pinned as in production) on ``url``; its
    base URL.

    ``settings`` are more ``RECENGINE_*`` variables, overriding the world's registry too.
    """
    port = local_postgres.free_port()
    env = {**os.environ, "RECENGINE_DATABASE_URL": url,
           "RECENGINE_REGISTRY": str(world.registry.root), "RECENGINE_WRITE_KEYS": WRITE_KEY,
           **(settings or {})}
    recengine = Path(sys.executable).with_name("recengine")
    proc = subprocess.Popen([str(recengine), "serve", "--port", str(port),
                             "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not _ready(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready in {READY_SECONDS} s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- wrk ---------------------------------------------------------------------------------------

def _wrk_command(url: str, seconds: float, connections: int, script: Path | None) -> list[str]:
    script_args = ["-s", str(script)] if script is not None else []
    return ["wrk", *script_args, "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
            url]


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, float]:
    """One wrk run of ``seconds``; its figures (see :func:`parse_wrk`)."""
    out = subprocess.run(_wrk_command(url, seconds, connections, script), capture_output=True,
                         text=True, timeout=seconds + 60, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    """requests, rps, p50/p99/max latency (ms), non-2xx and socket errors of wrk's report."""
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out))
    lat = {p: _ms(_find(rf"\s{p}%\s+([\d.]+\w+)", out)) for p in ("50", "99")}
    max_ms = _ms(_find(r"Latency\s+\S+\s+\S+\s+([\d.]+\w+)", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        out)
    return {"requests": int(_find(r"(\d+) requests in", out)), "rps": rps,
            "p50_ms": lat["50"], "p99_ms": lat["99"], "max_ms": max_ms,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, sockets.groups())) if sockets else 0}


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk's report has no {pattern!r}:\n{text}")
    return match.group(1)


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def lua_script(folder: Path, name: str, users: Sequence[str], request: str,
               setup: str = "") -> Path:
    """A wrk script whose ``request`` body sees ``u``, the next user of a rotation."""
    path = folder / f"{name}.lua"
    path.write_text(f"local users = {{{','.join(json.dumps(u) for u in users)}}}\n"
                    f"local i = 0\n{setup}"
                    "request = function()\n  i = i + 1\n  local u = users[(i % #users) + 1]\n"
                    f"  {request}\nend\n")
    return path


def lua_recommendations(folder: Path, users: Sequence[str]) -> Path:
    return lua_script(folder, "recommendations", users,
                      "return wrk.format('GET', '/v1/users/' .. u .. '/recommendations?k=10')")


_POST = ("wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
         f"wrk.headers['X-API-Key'] = '{WRITE_KEY}'\n")


def lua_events(folder: Path, users: Sequence[str]) -> Path:
    """One view event per request, for the next user."""
    body = ("'{\"user_id\":\"' .. u .. '\",\"item_id\":\"i00001\",\"event_type\":\"view\"}'")
    return lua_script(folder, "events", users,
                      f"return wrk.format(nil, '/v1/events', nil, {body})", _POST)


def event_batches(users: Sequence[str], items: Sequence[str],
                  n: int) -> Iterator[dict[str, list[dict[str, str]]]]:
    """``n`` view events, as request bodies of ``BATCH``: random (user, item) pairs, no two alike
    (the store rejects a repeated event within a batch)."""
    pairs = np.random.default_rng(0).choice(len(users) * len(items), size=n, replace=False)
    events = [{"user_id": users[int(p) // len(items)], "item_id": items[int(p) % len(items)],
               "event_type": "view"} for p in pairs]
    for start in range(0, n, BATCH):
        yield {"events": events[start:start + BATCH]}


def lua_batches(folder: Path, users: Sequence[str], items: Sequence[str]) -> Path:
    """``BATCH`` events per request: bodies built once here, so wrk only sends them."""
    bodies = [json.dumps(body) for body in event_batches(users, items, 20 * BATCH)]
    setup = _POST + "local bodies = {" + ",".join(f"[==[{b}]==]" for b in bodies) + "}\n"
    return lua_script(folder, "batches", users,
                      "return wrk.format(nil, '/v1/events', nil, bodies[(i % #bodies) + 1])",
                      setup)


# -- measurements ------------------------------------------------------------------------------

def round_trips(base: str, users: list[str], n: int, items: list[str]) -> list[float]:
    """Milliseconds of ``n`` sequential post-then-fetch round trips (fewer if time runs out)."""
    times: list[float] = []
    deadline = time.monotonic() + ROUND_TRIP_SECONDS
    with httpx.Client(base_url=base, timeout=10) as client:
        for k in range(n):
            if time.monotonic() > deadline:
                break
            user, item = users[k % len(users)], items[k % len(items)]
            start = time.perf_counter()
            client.post("/v1/events", json={"user_id": user, "item_id": item,
                                            "event_type": "booking"},
                        headers={"X-API-Key": WRITE_KEY}).raise_for_status()
            client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return times


@dataclass
class Probe:
    """One request at a time beside the load: when it ran, how long, its status and version."""

    base: str
    user: str
    samples: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.wait(0.02):
                start = time.monotonic()
                try:
                    response = client.get(f"/v1/users/{self.user}/recommendations",
                                          params={"k": 10})
                    status = response.status_code
                    version = response.json().get("model_version") if status == 200 else None
                except httpx.HTTPError:
                    status, version = 0, None
                self.samples.append((start, (time.monotonic() - start) * 1000, status, version))

    def stop(self) -> None:
        self._stop.set()

    def versions_seen(self) -> list[str]:
        """The served versions in the order the probe saw them, repeats collapsed."""
        seen: list[str] = []
        for *_, version in self.samples:
            if version is not None and (not seen or seen[-1] != version):
                seen.append(version)
        return seen

    def latencies(self, start: float, end: float, *, inside: bool) -> list[float]:
        return [ms for t, ms, *_ in self.samples if (start <= t <= end) == inside]


@dataclass
class Load:
    """The recommendations load of :func:`under_load`: its probe, then wrk's report."""

    probe: Probe
    started: float = field(default_factory=time.monotonic)
    wrk: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def under_load(world: World, base: str, connections: int, bound_seconds: float) -> Iterator[Load]:
    """wrk on top-10 recommendations, and a probe beside it, while the block runs.

    wrk is started with ``bound_seconds`` as its duration (an upper bound) and stopped with
    SIGINT when the block ends, which makes it print its report; then ``wrk`` and ``seconds``
    are filled in.
    """
    cmd = _wrk_command(base, bound_seconds, connections,
                       lua_recommendations(world.folder, world.users))
    load = Load(Probe(base, world.users[1]))
    thread = threading.Thread(target=load.probe.run, daemon=True)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    thread.start()
    try:
        yield load
    finally:
        load.seconds = time.monotonic() - load.started
        process.send_signal(signal.SIGINT)  # wrk stops and prints its report
        out, _ = process.communicate(timeout=60)
        load.probe.stop()
        thread.join(timeout=CALL_SECONDS)
    load.wrk = parse_wrk(out)


@dataclass
class SwapRun:
    """What the swap section saw: wrk's report, each swap call, and the probe's view."""

    wrk: dict[str, float]
    calls: list[tuple[str, str, float]]  # (path, version served after, milliseconds)
    publish_s: float
    load_s: float
    window_s: float
    probe: Probe
    inside: list[float]  # probe latencies (ms) in the swap window
    outside: list[float]


def hot_swaps(world: World, base: str, seconds: int, connections: int, swaps: int) -> SwapRun:
    """wrk on recommendations; after a third of ``seconds``, publish v2 and swap ``swaps`` times.

    Each swap waits for the server's answer (the new model is loaded by then), then a pause of
    ``seconds / 3 / swaps``; the load goes on ``seconds / 3`` after the last.
    """
    calls: list[tuple[str, str, float]] = []
    with under_load(world, base, connections, seconds + swaps * SWAP_SECONDS) as load:
        time.sleep(seconds / 3)
        window_start = time.monotonic()
        started = time.perf_counter()
        second = world.registry.publish(world.models, data={"events": len(world.events)},
                                        metrics={}, notes="second version for the swap bench")
        publish_s = time.perf_counter() - started
        with httpx.Client(base_url=base, timeout=SWAP_SECONDS,
                          headers={"X-API-Key": WRITE_KEY}) as client:
            for k in range(swaps):
                path = f"/v1/models/{second}/activate" if k % 2 == 0 else "/v1/models/rollback"
                started = time.perf_counter()
                answer = client.post(path)
                answer.raise_for_status()
                calls.append((path, answer.json()["model_version"],
                              (time.perf_counter() - started) * 1000))
                time.sleep(seconds / 3 / max(swaps, 1))
        window_end = time.monotonic() + 1.0  # requests queued behind the last swap count too
        time.sleep(seconds / 3)
    probe = load.probe
    return SwapRun(load.wrk, calls, publish_s, load.seconds, window_end - window_start, probe,
                   probe.latencies(window_start, window_end, inside=True),
                   probe.latencies(window_start, window_end, inside=False))


@dataclass
class RetrainRun:
    """What the retrain section saw: the load, the scheduler's status, the new version."""

    load: Load
    after_events: int
    posted_at: float  # seconds into the load when the last event was posted
    retrain_s: float  # from the last post until the run was over (trained, gated, swapped)
    status: dict[str, Any]  # GET /v1/models/retraining at the end
    manifest: dict[str, Any] | None  # the retrained version's, if one was published
    inside: list[float]  # probe latencies (ms) from the first post to the run's end
    outside: list[float]


def retrain_under_load(world: World, url: str, seconds: int, connections: int,
                       after_events: int) -> RetrainRun:
    """A server retraining after ``after_events`` events, under the recommendations load.

    The load runs ``seconds / 3``, then the benchmark posts ``after_events`` events (batches of
    ``BATCH``), waits (at most ``RETRAIN_SECONDS``) until the scheduler has run once and is idle
    (its version, if published, is served by then), and loads ``seconds / 3`` more. The server
    gets a copy of the registry, so what it publishes stays out of the other sections.
    """
    registry = world.folder / "registry-retrain"
    shutil.copytree(world.registry.root, registry)
    settings = {"RECENGINE_REGISTRY": str(registry),
                "RECENGINE_RETRAIN_AFTER_EVENTS": str(after_events)}
    with (serving(world, url, settings) as base,
          under_load(world, base, connections, seconds + RETRAIN_SECONDS) as load,
          httpx.Client(base_url=base, timeout=CALL_SECONDS,
                       headers={"X-API-Key": WRITE_KEY}) as client):
        time.sleep(seconds / 3)
        window_start = time.monotonic()
        accepted = 0
        for body in event_batches(world.users, world.items, after_events):
            answer = client.post("/v1/events", json=body)
            answer.raise_for_status()
            accepted += answer.json()["accepted"]
        if accepted < after_events:  # else the trigger would never fire
            raise RuntimeError(f"the server accepted {accepted} of {after_events} events")
        posted = time.monotonic()
        status = client.get("/v1/models/retraining").json()
        while not (status["runs"] >= 1 and not status["busy"]) and (
                time.monotonic() < posted + RETRAIN_SECONDS):
            time.sleep(0.5)
            status = client.get("/v1/models/retraining").json()
        window_end = time.monotonic()
        time.sleep(seconds / 3)
        status = client.get("/v1/models/retraining").json()
    version = status["last_version"]
    return RetrainRun(load, after_events, posted - load.started, window_end - posted, status,
                      None if version is None else ModelRegistry(registry).show(version),
                      load.probe.latencies(window_start, window_end, inside=True),
                      load.probe.latencies(window_start, window_end, inside=False))


# -- report ------------------------------------------------------------------------------------

def _pct(values: Sequence[float], q: float) -> str:
    return f"{np.percentile(values, q):.2f}" if len(values) else "–"


def print_rows(rows: dict[tuple[str, str], dict[str, float]], per_request: dict[str, int]) -> None:
    print("| measurement | store | requests/s | events/s | p50 ms | p99 ms | non-2xx "
          "| socket errors |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, store), r in rows.items():
        events = f"{r['rps'] * per_request[name]:.0f}" if per_request.get(name) else ""
        print(f"| {name} | {store} | {r['rps']:.0f} | {events} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['non_2xx']} | {r['socket_errors']} |")


def print_swap(swap: SwapRun, seconds: int, connections: int) -> None:
    r, versions, samples = swap.wrk, swap.probe.versions_seen(), swap.probe.samples
    print(f"\nHot swaps under load: wrk -t2 -c{connections} on top-10 recommendations for "
          f"{swap.load_s:.0f} s; after {seconds / 3:.1f} s the benchmark publishes a second "
          f"version ({swap.publish_s:.2f} s), then swaps {len(swap.calls)} times, alternately "
          f"activating it and rolling back, each swap answered once the new model is loaded "
          f"(swap window {swap.window_s:.1f} s); {seconds / 3:.1f} s more load after. A probe "
          f"requests one user's list every 20 ms beside the load. wrk counts a reply slower than "
          f"2 s as a socket error (timeout).\n")
    print("| requests | requests/s | non-2xx | socket errors | p50 ms | p99 ms | max ms |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['requests']} | {r['rps']:.0f} | {r['non_2xx']} | {r['socket_errors']} | "
          f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
    print("\n| swap call | served after | took ms |\n|---|---|---:|")
    for path, version, ms in swap.calls:
        print(f"| `POST {path}` | {version} | {ms:.0f} |")
    failed = sum(1 for *_, status, _version in samples if status != 200)
    inside, outside = swap.inside, swap.outside
    print(f"\nThe probe saw the served version change {len(versions) - 1} times "
          f"({' → '.join(versions)}); {failed} of its {len(samples)} requests failed. Its "
          f"latency during the swap window: p50 {_pct(inside, 50)} ms, p99 {_pct(inside, 99)} "
          f"ms, max {max(inside, default=0):.2f} ms ({len(inside)} requests); outside it: p50 "
          f"{_pct(outside, 50)} ms, p99 {_pct(outside, 99)} ms.")


def _described(name: str, entry: Mapping[str, Any]) -> str:
    """A manifest's model as "wals (wals, 64 factors)"."""
    factors = entry["config"].get("factors")
    return f"{name} ({entry['model']}{'' if factors is None else f', {factors} factors'})"


def print_retrain(run: RetrainRun, connections: int) -> None:
    r, status, versions = run.load.wrk, run.status, run.load.probe.versions_seen()
    print(f"\nBackground retraining under load: the server runs with "
          f"RECENGINE_RETRAIN_AFTER_EVENTS={run.after_events} and no RECENGINE_RETRAIN_MODELS "
          f"(it retrains the active version's models with their configurations); wrk -t2 "
          f"-c{connections} on top-10 recommendations for {run.load.seconds:.0f} s. "
          f"{run.posted_at:.0f} s in, the benchmark posts {run.after_events} events "
          f"({BATCH} a request); {run.retrain_s:.0f} s after the last post the run was over "
          f"(trigger poll, snapshot, the gate's holdout fit and evaluation, the refit on all "
          f"events, publish, hot swap of the new version); then the load goes on. A probe "
          f"requests one user's list every 20 ms. wrk counts a reply slower than 2 s as a "
          f"socket error (timeout).\n")
    print("| requests | requests/s | non-2xx | socket errors | p50 ms | p99 ms | max ms "
          "| retrains run | published | failed | served version (probe) |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {r['requests']} | {r['rps']:.0f} | {r['non_2xx']} | {r['socket_errors']} | "
          f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {status['runs']} | "
          f"{status['published']} | {status['failures']} | {' → '.join(versions)} |")
    if run.manifest is not None:
        trained = ", ".join(_described(name, entry)
                            for name, entry in run.manifest["models"].items())
        print(f"\n{run.manifest['version']} holds {trained}, trained on events up to id "
              f"{run.manifest['data'].get('last_id')}.")
    last = status["last_reason"] or status["last_error"] or "none finished"
    print(f"\nLast run: {last}. Probe latency from "
          f"the first post to the run's end: p50 {_pct(run.inside, 50)} ms, p99 "
          f"{_pct(run.inside, 99)} ms, max {max(run.inside, default=0):.2f} ms "
          f"({len(run.inside)} requests); outside it: p50 {_pct(run.outside, 50)} ms, p99 "
          f"{_pct(run.outside, 99)} ms.")
    print(f"\nThe probe's slowest requests, in seconds after the last post: {_slowest(run)}.")


def _slowest(run: RetrainRun, n: int = 5) -> str:
    """The ``n`` slowest probe requests as "ms at +s (version)", and when the new version was
    first served: where the worst latencies sit in the run."""
    posted = run.load.started + run.posted_at
    samples = run.load.probe.samples
    worst = sorted(samples, key=lambda s: s[1], reverse=True)[:n]
    parts = [f"{ms:.0f} ms at {t - posted:+.1f} s ({version})" for t, ms, _, version in worst]
    first = next((t for t, *_, version in samples
                  if run.manifest is not None and version == run.manifest["version"]), None)
    if first is not None:
        parts.append(f"new version first served at {first - posted:+.1f} s")
    return "; ".join(parts)


# -- main --------------------------------------------------------------------------------------

def _subset(allowed: tuple[str, ...], flag: str) -> Callable[[str], list[str]]:
    """A parser of ``flag``'s comma-separated value: some of ``allowed``."""
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        if not names or set(names) - set(allowed):
            raise argparse.ArgumentTypeError(f"{flag} takes some of {', '.join(allowed)}")
        return names
    return parse


@dataclass
class Results:
    rows: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    trips: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    swap: SwapRun | None = None
    retrain: RetrainRun | None = None

    def read(self, world: World, base: str, store: str, name: str, server: str,
             args: argparse.Namespace) -> None:
        """``name``'s rounds against the same server's /healthz; the table keeps the median
        round's rows."""
        rounds = []
        for _ in range(args.rounds):
            health = wrk(f"{base}/healthz", args.seconds, args.connections)
            answers = wrk(base, args.seconds, args.connections,
                          lua_recommendations(world.folder, world.users))
            rounds.append((answers["rps"] / health["rps"], health, answers))
        rounds.sort(key=lambda r: r[0])
        _, health, answers = rounds[len(rounds) // 2]
        self.rows[f"/healthz, {server} server", store] = health
        self.rows[name, store] = answers
        self.ratios[name] = [ratio for ratio, *_ in rounds]


def plan(sections: list[str], stores: list[str]) -> dict[str, set[str]]:
    """Store → its sections: read, swap and retrain once (on SQLite), the rest per store."""
    out: dict[str, set[str]] = {}
    for store in STORES:
        wanted = set(sections) & {"ingestion", "roundtrip"} if store in stores else set()
        if store == "sqlite":
            wanted |= set(sections) & {"read", "swap", "retrain", "workers"}
        if wanted:
            out[store] = wanted
    return out


def measure(world: World, base: str, store: str, sections: set[str],
            args: argparse.Namespace, results: Results) -> None:
    """``sections`` against one running server on ``store``."""
    seconds, connections = args.seconds, args.connections
    if "read" in sections:
        results.read(world, base, store, CACHED, "default", args)
    if "swap" in sections:  # before ingestion: no live histories yet
        results.swap = hot_swaps(world, base, seconds, connections, args.swaps)
    if "ingestion" in sections:
        results.rows["POST /v1/events, 1 event", store] = wrk(
            base, seconds, connections, lua_events(world.folder, world.users))
        results.rows[f"POST /v1/events, {BATCH} events", store] = wrk(
            base, seconds, connections, lua_batches(world.folder, world.users, world.items))
    if "roundtrip" in sections:
        results.trips[store] = round_trips(base, world.users, 300, world.items)


#: The read section's servers: the default, and RECENGINE_CACHE_USERS=0 (each answer computed).
CACHED = "top-10 recommendations"
UNCACHED = "top-10 recommendations, cache off"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="read section: alternating /healthz and recommendations runs")
    parser.add_argument("--only", type=_subset(SECTIONS, "--only"), default=list(SECTIONS),
                        help=f"comma-separated sections: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--stores", type=_subset(STORES, "--stores"), default=list(STORES),
                        help="event stores for ingestion and roundtrip (default: both)")
    parser.add_argument("--swaps", type=int, default=4,
                        help="hot swaps (activate, rollback, ...) in the swap section")
    parser.add_argument("--retrain-events", type=int, default=1000,
                        help="the retrain section's trigger, and the events it posts")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    print(f"```\npython benchmarks/bench_serving.py {' '.join(sys.argv[1:])}\n```\n")
    notes: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="recengine-bench-"))
    results = Results()
    try:
        world = build(folder, args.users, args.items, args.factors)
        for store, sections in plan(args.only, args.stores).items():
            with contextlib.ExitStack() as stack:
                if store == "sqlite":
                    url = f"sqlite:///{folder / 'events.db'}"
                elif local_postgres.find_bin_dir() is None:
                    notes.append("PostgreSQL rows left out: no server binaries "
                                 "(apt-get install postgresql)")
                    continue
                else:
                    url = stack.enter_context(local_postgres.start(durable=True)).url()
                fill(world, url)
                if sections - {"retrain", "workers"}:
                    with serving(world, url) as base:
                        measure(world, base, store, sections, args, results)
                if "read" in sections:  # every request computed: no answer is kept
                    with serving(world, url, {"RECENGINE_CACHE_USERS": "0"}) as base:
                        results.read(world, base, store, UNCACHED, "cache-off", args)
                for workers in (1, 2) if "workers" in sections else ():
                    with serving(world, url, {"RECENGINE_CACHE_USERS": "0"}, workers) as base:
                        results.read(world, base, store, f"{UNCACHED}, {workers} worker(s)",
                                     f"{workers}-worker", args)
                if "retrain" in sections:  # its own server, once the other has stopped
                    results.retrain = retrain_under_load(world, url, args.seconds,
                                                         args.connections, args.retrain_events)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"One server process (unless a row says workers), wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s, {args.items:,} items, {args.users:,} users, {args.factors} "
          f"factors; every event durable before the reply.\n")
    if results.rows:
        print_rows(results.rows, {"POST /v1/events, 1 event": 1,
                                  f"POST /v1/events, {BATCH} events": BATCH})
    for name, ratios in results.ratios.items():
        print(f"\n{name}: {', '.join(f'{r:.0%}' for r in ratios)} of the same server's /healthz "
              f"throughput in {len(ratios)} rounds (median {statistics.median(ratios):.0%}).")
    for store, trips in results.trips.items():
        print(f"\nPost an event, then fetch that user's recommendations ({len(trips)} sequential "
              f"round trips, {store}): p50 {_pct(trips, 50)} ms, p99 {_pct(trips, 99)} ms.")
    if results.swap is not None:
        print_swap(results.swap, args.seconds, args.connections)
    if results.retrain is not None:
        print_retrain(results.retrain, args.connections)
    for note in notes:
        print(f"\n{note}.")


if __name__ == "__main__":
    main()

"""Light requests' latency while heavy ones flood one `recengine serve` process (issue 11).

Builds a synthetic catalogue, trains and publishes WALS, stores the events in SQLite and starts
`recengine serve` (as bench_serving.py does), then runs wrk for top-10 recommendations of 1,000
rotating users (the light requests, `--light-connections`), on each server:

- alone: the light requests' own p99;
- flood: the same while a second wrk keeps `--heavy-connections` heavy requests in flight, each
  the largest batch the default limits allow (`POST /v1/recommendations`, 100 users × k=100,
  half of them with explain=true for 10 users × k=100).

The servers, back to back in one run (same data, same machine, `--rounds` times alternating):

- heavy processes: heavy requests computed in `RECENGINE_HEAVY_PROCESSES` worker processes at a
  lower priority (serving/heavy.py), one server per count in `--processes` (the default, 1, is
  the default server);
- heavy threads: `RECENGINE_HEAVY_PROCESSES=0`, heavy requests in `heavy_concurrency` = 2
  worker threads of the server process, 32 more waiting, then 429 (before heavy processes);
- with `--unbudgeted`, also threads with the budget wide open (RECENGINE_HEAVY_CONCURRENCY = 64),
  about what the server did before the budget.

The target is a light p99 under 20 ms during the flood. The 1-minute load average is read before
and after each wrk run (`os.getloadavg`), and its range printed.

    python benchmarks/bench_flood.py --items 20000 --users 5000 --seconds 15

Requires Debian's `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx

from bench_serving import (
    WRITE_KEY,
    World,
    build,
    fill,
    lua_recommendations,
    parse_wrk,
    serving,
    wrk,
)

#: The heaviest requests the default limits allow: 10,000 results, or 1,000 explained.
BATCH = {"k": 100, "users": 100}
EXPLAINED = {"k": 100, "users": 10, "explain": True}


def lua_heavy(folder: Path, users: list[str]) -> Path:
    """Alternating heavy batches: 100 users × k=100, then 10 users × k=100 explained."""
    bodies = [json.dumps({**BATCH, "users": users[:BATCH["users"]]}),
              json.dumps({**EXPLAINED, "users": users[:EXPLAINED["users"]]})]
    path = folder / "heavy.lua"
    path.write_text(
        "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['X-API-Key'] = '{WRITE_KEY}'\n"
        f"local bodies = {{{', '.join(json.dumps(b) for b in bodies)}}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        "  return wrk.format(nil, '/v1/recommendations', nil, bodies[(i % 2) + 1])\nend\n")
    return path


def flood(world: World, url: str, folder: Path, args: argparse.Namespace,
          settings: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """The light requests alone, then under the heavy flood, on one server; the load
    averages seen."""
    light, heavy = lua_recommendations(folder, world.users), lua_heavy(folder, world.users)
    loads = [os.getloadavg()[0]]
    with serving(world, url, settings) as base:
        # One heavy answer first: the heavy worker has started and loaded its model.
        first = httpx.post(f"{base}/v1/recommendations", headers={"X-API-Key": WRITE_KEY},
                           json={**EXPLAINED, "users": world.users[:10]}, timeout=300)
        first.raise_for_status()
        target = f"{base}/v1/users/x/recommendations"
        wrk(target, 3, args.light_connections, light)  # warm: every user's first answer
        loads.append(os.getloadavg()[0])
        alone = wrk(target, args.seconds, args.light_connections, light)
        loads.append(os.getloadavg()[0])
        heavy_run = subprocess.Popen(
            ["wrk", "-s", str(heavy), "-t1", f"-c{args.heavy_connections}",
             f"-d{args.seconds + 4}s", "--latency", "--timeout", "60s", base],
            stdout=subprocess.PIPE, text=True)
        try:
            under = wrk(target, args.seconds, args.light_connections, light)
        finally:
            out, _ = heavy_run.communicate(timeout=args.seconds + 120)
        loads.append(os.getloadavg()[0])
    return {"alone": alone, "flood": under, "heavy": parse_wrk(out),
            "load": {"min": min(loads), "max": max(loads)}}


def servers(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Each server's name and its RECENGINE_* settings, in the order they run."""
    named = {f"heavy processes ({count})": {"RECENGINE_HEAVY_PROCESSES": str(count)}
             for count in args.processes}
    named["heavy threads (2)"] = {"RECENGINE_HEAVY_PROCESSES": "0"}
    if args.unbudgeted:
        named["threads, no budget (64)"] = {"RECENGINE_HEAVY_PROCESSES": "0",
                                            "RECENGINE_HEAVY_CONCURRENCY": "64",
                                            "RECENGINE_HEAVY_QUEUE": "1000"}
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--light-connections", type=int, default=4)
    parser.add_argument("--heavy-connections", type=int, default=16)
    parser.add_argument("--processes", type=lambda text: [int(n) for n in text.split(",")],
                        default=[1], help="heavy process counts to compare, e.g. 1,2")
    parser.add_argument("--unbudgeted", action="store_true",
                        help="also threads with the budget wide open")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the servers this many times, alternating")
    args = parser.parse_args()
    runs: list[tuple[str, dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        world = build(folder, args.users, args.items, args.factors)
        url = f"sqlite:///{folder / 'events.db'}"
        fill(world, url)
        for _ in range(args.rounds):
            for name, settings in servers(args).items():
                runs.append((name, flood(world, url, folder, args, settings)))
    print(f"light: top-10, {args.light_connections} connections; heavy: "
          f"{args.heavy_connections} connections; {args.seconds} s each; {os.cpu_count()} CPUs")
    print("| server | light alone p50 / p99 ms | light in flood p50 / p99 ms | light rps "
          "alone / flood | heavy done/s | heavy 429 | heavy p99 ms | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs:
        alone, under, heavy, load = run["alone"], run["flood"], run["heavy"], run["load"]
        print(f"| {name} | {alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} | "
              f"{under['p50_ms']:.1f} / {under['p99_ms']:.1f} | {alone['rps']:.0f} / "
              f"{under['rps']:.0f} | "
              f"{(heavy['requests'] - heavy['non_2xx']) / (args.seconds + 4):.1f} | "
              f"{heavy['non_2xx']:.0f} | {heavy['p99_ms']:.0f} | "
              f"{load['min']:.1f}-{load['max']:.1f} |")
        if under["non_2xx"] or under["socket_errors"]:
            print(f"  light failures in the flood: {under['non_2xx']:.0f} non-2xx, "
                  f"{under['socket_errors']:.0f} socket errors")


if __name__ == "__main__":
    main()

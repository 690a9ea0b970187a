"""Light requests' latency while heavy ones flood one `recengine serve` process (issue 11).

Builds a synthetic catalogue, trains and publishes WALS, stores the events in SQLite and starts
`recengine serve` (as bench_serving.py does), then runs wrk for top-10 recommendations of 1,000
rotating users (the light requests, `--light-connections`), three times:

- alone: the light requests' own p99;
- flood: the same while a second wrk keeps `--heavy-connections` heavy requests in flight, each
  the largest batch the default limits allow (`POST /v1/recommendations`, 100 users × k=100,
  half of them with explain=true for 10 users × k=100), on the default server (heavy requests
  share `heavy_concurrency` = 2 worker threads, 32 more waiting, then 429);
- unbudgeted: the flood again on a server whose budget is wide open (RECENGINE_HEAVY_CONCURRENCY
  = 64), which is about what the server did before the budget, with the default limits.

The target is a light p99 under 20 ms during the flood.

    python benchmarks/bench_flood.py --items 20000 --users 5000 --seconds 15

Requires Debian's `wrk`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

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
    """The light requests alone, then under the heavy flood, on one server."""
    light, heavy = lua_recommendations(folder, world.users), lua_heavy(folder, world.users)
    with serving(world, url, settings) as base:
        target = f"{base}/v1/users/x/recommendations"
        wrk(target, 3, args.light_connections, light)  # warm: every user's first answer
        alone = wrk(target, args.seconds, args.light_connections, light)
        heavy_run = subprocess.Popen(
            ["wrk", "-s", str(heavy), "-t1", f"-c{args.heavy_connections}",
             f"-d{args.seconds + 4}s", "--latency", "--timeout", "60s", base],
            stdout=subprocess.PIPE, text=True)
        try:
            under = wrk(target, args.seconds, args.light_connections, light)
        finally:
            out, _ = heavy_run.communicate(timeout=args.seconds + 120)
    return {"alone": alone, "flood": under, "heavy": parse_wrk(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--light-connections", type=int, default=4)
    parser.add_argument("--heavy-connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        world = build(folder, args.users, args.items, args.factors)
        url = f"sqlite:///{folder / 'events.db'}"
        fill(world, url)
        runs = {"budget (default)": flood(world, url, folder, args),
                "no budget": flood(world, url, folder, args,
                                   {"RECENGINE_HEAVY_CONCURRENCY": "64",
                                    "RECENGINE_HEAVY_QUEUE": "1000"})}
    print(f"light: top-10, {args.light_connections} connections; heavy: "
          f"{args.heavy_connections} connections; {args.seconds} s each")
    print("| server | light alone p50 / p99 ms | light in flood p50 / p99 ms | light rps "
          "alone / flood | heavy done/s | heavy 429 | heavy p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        alone, under, heavy = run["alone"], run["flood"], run["heavy"]
        print(f"| {name} | {alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} | "
              f"{under['p50_ms']:.1f} / {under['p99_ms']:.1f} | {alone['rps']:.0f} / "
              f"{under['rps']:.0f} | "
              f"{(heavy['requests'] - heavy['non_2xx']) / (args.seconds + 4):.1f} | "
              f"{heavy['non_2xx']:.0f} | {heavy['p99_ms']:.0f} |")
        if under["non_2xx"] or under["socket_errors"]:
            print(f"  light failures in the flood: {under['non_2xx']:.0f} non-2xx, "
                  f"{under['socket_errors']:.0f} socket errors")


if __name__ == "__main__":
    main()

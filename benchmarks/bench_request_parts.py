"""Where a served request's time goes, without HTTP: the figures behind session 3's changes.

On the same world as bench_serving.py (100,000 items, 20,000 users, 64 factors, the HNSW graphs
saved with the model, events in SQLite):

- **route:** CPU per request through the ASGI app, no server: ``/healthz``; the recommendations
  route as served (``DirectRoute``); the same endpoint on a plain FastAPI route, whose general
  solver reads the API key and the query model. 3,000 calls each, 1,000 rotating users, every
  answer computed (``RECENGINE_CACHE_USERS=0``).
- **first calls:** in a fresh process, each request kind on a model loaded straight from the
  registry (no warm-up), first call against second: what a version's warm-up takes off the
  request path.
- **garbage collection:** a full collection in a fresh process that has imported the server,
  before and after ``gc.freeze()``.

    python benchmarks/bench_request_parts.py --items 100000 --users 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_serving import build, fill

#: The child processes' code: one fresh interpreter each, so nothing is loaded or compiled yet.
FIRST_CALLS = """
import sys, time
from recengine.store.registry import ModelRegistry
model = ModelRegistry(sys.argv[1]).load(name="wals")
users, items = model.users_.ids[:1].tolist(), model.items_.ids[:2].tolist()
calls = {"recommend (top-k)": lambda: model.recommend(users, 10),
         "recommend_history (fold-in)": lambda: model.recommend_history(items, 10),
         "similar_items": lambda: model.similar_items(items[0], 10),
         "explain (reasons)": lambda: model.explain(users[0], items)}
for name, call in calls.items():
    times = []
    for _ in range(2):
        start = time.perf_counter(); call(); times.append((time.perf_counter() - start) * 1e3)
    print(f"| {name} | {times[0]:.1f} | {times[1]:.1f} |")
"""

COLLECTION = """
import gc, time
import recengine.serving.app, uvicorn, faiss
def full():
    start = time.perf_counter(); gc.collect(); return (time.perf_counter() - start) * 1e3
print(f"| after the imports | {len(gc.get_objects()):,} | {min(full() for _ in range(3)):.1f} |")
gc.freeze()
print(f"| after gc.freeze() | {len(gc.get_objects()):,} | {min(full() for _ in range(3)):.1f} |")
"""


def route_costs(registry: Path, url: str, users: list[str], calls: int) -> list[tuple[str, float]]:
    """Mean CPU milliseconds per call of each route, in this process."""
    os.environ.update(RECENGINE_DATABASE_URL=url, RECENGINE_REGISTRY=str(registry),
                      RECENGINE_CACHE_USERS="0")
    from fastapi.routing import APIRoute
    from threadpoolctl import threadpool_limits

    from recengine.serving import create_app
    from recengine.serving.routes.recommendations import recommend
    from recengine.serving.schemas import RecommendationList

    threadpool_limits(1, user_api="blas")
    app = create_app()
    app.router.add_api_route("/solved/users/{user_id}/recommendations", recommend,
                             methods=["GET"], response_model=RecommendationList,
                             route_class_override=APIRoute)

    async def call(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"k=10", "root_path": "", "headers": [(b"host", b"bench")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{path}: {sent}")

    async def measure(template: str) -> float:
        for i in range(200):  # warm
            await call(template.format(users[i % len(users)]))
        start = time.process_time()
        for i in range(calls):
            await call(template.format(users[i % len(users)]))
        return (time.process_time() - start) / calls * 1e3

    routes = [("`/healthz`", "/healthz"),
              ("recommendations, `DirectRoute` (as served)", "/v1/users/{}/recommendations"),
              ("recommendations, FastAPI's solver", "/solved/users/{}/recommendations")]
    return [(name, asyncio.run(measure(path))) for name, path in routes]


def child(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, timeout=300).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_request_parts.py {' '.join(sys.argv[1:])}\n```\n")
    folder = Path(tempfile.mkdtemp(prefix="recengine-parts-"))
    try:
        world = build(folder, args.users, args.items, args.factors)
        url = f"sqlite:///{folder / 'events.db'}"
        fill(world, url)
        print("| route (in-process, no HTTP) | CPU ms per request |\n|---|---:|")
        for name, ms in route_costs(world.registry.root, url, world.users, args.calls):
            print(f"| {name} | {ms:.3f} |")
        print("\n| first call in a fresh process | first ms | second ms |\n|---|---:|---:|")
        print(child(FIRST_CALLS, str(world.registry.root)), end="")
        print("\n| full garbage collection | objects tracked | ms |\n|---|---:|---:|")
        print(child(COLLECTION), end="")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

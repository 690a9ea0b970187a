"""Memory across hot swaps, in one process: does serving version after version leak?

Publishes one WALS + popularity version `--versions` times (5,000 users, 20,000 items, 32
factors by default, with its training data, as a training run publishes), then swaps through
them twice, activating each as the scheduler does, answering 500 users after each swap. Prints,
after each swap and a full collection, the process's RSS and the memory Python allocated
(tracemalloc), then what grew most in Python between the third swap and the last.

    python benchmarks/bench_swap_memory.py --versions 12 [--no-trim]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
from pathlib import Path

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity
from recengine.pipeline.prepare import training_data
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=12)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--no-trim", action="store_true",
                        help="keep freed heap memory after swaps (the behaviour before trimming)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="recengine-swaps-"))
    dataset = generate(n_users=args.users, n_items=args.items, seed=0, mean_events_per_user=20)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    store = EventStore(f"sqlite:///{folder / 'events.db'}")
    store.append(dataset.events)
    registry = ModelRegistry(folder / "registry")
    models = {"wals": WALS(factors=32, iterations=3).fit(data),
              "popularity": Popularity().fit(data)}
    versions = [registry.publish(models, data=store.snapshot(), metrics={}, training=data)
                for _ in range(args.versions)]
    registry.activate(versions[0])
    state = ServingState(registry, store, trim_after_swap=not args.no_trim)
    state.load_current()
    users = [str(u) for u in data.users.ids[:500]]
    tracemalloc.start()
    print("| swap | version | RSS MB | Python-allocated MB |\n|---:|---|---:|---:|")
    third = None
    for n, version in enumerate(versions[1:] * 2, start=1):
        state.swap(version, activate=True)
        for user in users:
            state.recommend(user, 10)
        gc.collect()
        if n == 3:
            third = tracemalloc.take_snapshot()
        print(f"| {n} | {version} | {rss_mb():.0f} | "
              f"{tracemalloc.get_traced_memory()[0] / 1e6:.1f} |", flush=True)
    assert third is not None
    print("\nGrew most in Python from the third swap to the last:")
    for stat in tracemalloc.take_snapshot().compare_to(third, "lineno")[:5]:
        print(f"- {stat}")


if __name__ == "__main__":
    main()

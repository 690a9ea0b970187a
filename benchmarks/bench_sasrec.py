"""One request to SASRec, as a server answers it: a 50-event history over a large catalogue.

Builds a SASRec of the given shape over ``--items`` items (a fresh network installed through
``set_state``, as a load does: the cost of scoring does not depend on the weights learned), then
times ``recommend_query`` for one anonymous user with a 50-event history (item, event type,
timestamp) at a time: the events become a query, the network reads them, every item is scored
and base.py's top-k takes the best 10, seen items excluded. With ``--index`` the top-10 comes
from an HNSW graph over the item vectors instead (as a server answers over a catalogue of
50,000 items or more): the network still reads the history, the graph replaces scoring every
item. Wall time and the thread's CPU time (what the code costs, without waiting for a core).

    python benchmarks/bench_sasrec.py --items 100000 --history 50 --requests 1000 --threads 1
    python benchmarks/bench_sasrec.py --items 100000 --history 50 --requests 1000 --index
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from recengine.data.query import Event, Query
from recengine.data.vocabulary import Vocabulary
from recengine.models.sasrec import SASRec, _network
from recengine.models.torch_training import network_arrays, torch_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--index", action="store_true", help="answer from an HNSW graph")
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_sasrec.py {' '.join(sys.argv[1:])}\n```\n")
    torch_module().set_num_threads(args.threads)
    model = SASRec(hidden=args.hidden, layers=args.layers, max_length=args.max_length)
    types = np.array(["view", "book"])
    arrays = {"event_types_": types, "item_counts_": np.ones(args.items, np.int64),
              **network_arrays(_network(args.items, len(types), model.config))}
    items = Vocabulary.from_array(np.array([f"i{i}" for i in range(args.items)]), name="item")
    users = Vocabulary.from_array(np.array(["u0"]), name="user")
    model.set_state(users, items, arrays, {})
    if args.index:
        started = time.perf_counter()
        model.build_index()
        print(f"HNSW graph built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rng = np.random.default_rng(0)
    times, cpu = [], []
    for k in range(args.requests + 20):
        picks = rng.choice(args.items, size=args.history, replace=False)
        history = [Event(f"i{i}", str(types[t % 2]), timestamp=1_700_000_000 + 60 * t)
                   for t, i in enumerate(picks.tolist())]
        start, start_cpu = time.perf_counter(), time.thread_time()
        ids, _ = model.recommend_query(Query(history=history), 10)
        if k >= 20:  # the first requests warm torch's kernels up
            times.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
        assert len(ids) == 10 and not set(ids.tolist()) & {f"i{i}" for i in picks.tolist()}
    ms, cpu_ms = np.array(times) * 1e3, np.array(cpu) * 1e3
    print(f"| items | answer | history | hidden × layers, N | threads | p50 ms | p99 ms | max ms "
          f"| CPU p50 ms | CPU p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {args.items:,} | {'HNSW' if args.index else 'exact'} | {args.history} | "
          f"{args.hidden} × {args.layers}, {args.max_length} | {args.threads} | "
          f"{np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | {ms.max():.2f} | "
          f"{np.percentile(cpu_ms, 50):.2f} | {np.percentile(cpu_ms, 99):.2f} |")


if __name__ == "__main__":
    main()

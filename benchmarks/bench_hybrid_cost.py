"""What the hybrid costs to serve at 100,000 items: one answer in-process, and the served
hybrid's throughput against the same server's ``/healthz``.

The synthetic rentals (``--items`` listings, ``--users`` travellers, ~``--events-per-user``
events each); the hybrid with 500 candidates from every default source that runs at that size:
``wals``, ``item-knn``, ``content``, ``wals-features``, ``popularity``, ``segment-popularity``
(``ease`` is left out: its dense ``n_items²`` weights are refused above 20,000 items). Its
ranker learns from fewer users and epochs than by default (``--ranker-users``,
``--ranker-epochs``): this measures serving, not quality.

- in-process: p50 and p99 of one top-10 answer (``recommend_query``), in a process of its own
  that loads the version (saved with its graphs) as a server does, for ``--requests`` training
  users asked one at a time (their history lengths reported), on one compute thread as in a
  server process (``pin_compute_threads``), and how the time splits between candidate
  generation (the sources' proposals, the union, each candidate's standardised scores) and
  the signals plus the network; twice in the same run: every source scoring the whole
  catalogue, then the sources with a vector form answering from their HNSW graphs
  (``Hybrid.build_index``, what training runs and servers do from 50,000 items);
- served (``--served``, needs Debian's ``wrk``): the version (its graphs in it) published and
  served by ``recengine serve``, wrk against ``/v1/users/{id}/recommendations`` (1,000 users)
  and ``/healthz`` in alternating rounds (``benchmarks/bench_serving.py``'s read section), the
  ratio of their throughputs: first with the per-user answer cache off (every answer
  computed: the hybrid's own cost), then as served by default (the cache on: after the
  first pass most answers are cached ones, until an event of that user arrives).

With ``--batches 1,2,4,8,16``, the same users answered that many at a time (what batching
concurrent requests would save); with ``--profile``, a cProfile of the answers from the graphs.

    python benchmarks/bench_hybrid_cost.py --items 100000 --users 20000 --served
    python benchmarks/bench_hybrid_cost.py --batches 1,2,4,8,16 --profile
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_serving import Results, World, fill, serving
from recengine.data.dataset import Dataset
from recengine.data.query import Queries, Query
from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.models import Popularity
from recengine.models.base import Recommender
from recengine.models.hybrid import Hybrid
from recengine.models.hybrid.candidates import propose
from recengine.models.hybrid.config import DEFAULT_SOURCES
from recengine.pipeline.prepare import training_data
from recengine.serving.app import pin_compute_threads
from recengine.store.registry import ModelRegistry


def hybrid_at_scale(candidates: int, users: int, epochs: int) -> Hybrid:
    """The default sources less EASE, ``candidates`` per request."""
    sources = [s for s in DEFAULT_SOURCES if s.model != "ease"]
    return Hybrid(sources=sources, candidates=candidates, max_users=users,
                  ranker={"epochs": epochs})


def split_ms(model: Hybrid, queries: Queries) -> tuple[float, float]:
    """Milliseconds of candidate generation, and of the rest of one answer (signals, the
    network, the top-k), for one query."""
    start = time.perf_counter()
    propose(model.sources_, queries, model.config.candidates)
    middle = time.perf_counter()
    model.recommend_queries(queries, 10)
    end = time.perf_counter()
    return (middle - start) * 1000, (end - middle) * 1000 - (middle - start) * 1000


def answer_times(model: Hybrid, data: TrainingData, requests: int) -> str:
    """p50 / p99 of one answer for the first ``requests`` training users, one at a time (the
    first 20 left out as warm-up); then, in a second pass, how it splits."""
    times = []
    for user in data.users.ids[:requests]:
        start = time.perf_counter()
        model.recommend_query(Query(user=str(user)), 10)
        times.append((time.perf_counter() - start) * 1000)
    split = np.array([split_ms(model, model.training_queries(np.array([index])))
                      for index in range(requests)])[20:]
    rest = np.array(times[20:])
    return (f"p50 {np.percentile(rest, 50):.1f} ms, p99 {np.percentile(rest, 99):.1f} ms; of "
            f"which candidate generation p50 {np.percentile(split[:, 0], 50):.1f} ms, signals "
            f"+ network + top-k p50 {np.percentile(split[:, 1], 50):.1f} ms")


def synthetic(args: argparse.Namespace) -> tuple[Dataset, TrainingData]:
    """The rentals of ``args``' size (seed 0: the same in every process)."""
    started = time.perf_counter()
    dataset = generate(n_users=args.users, n_items=args.items, seed=0,
                       mean_events_per_user=args.events_per_user)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    print(f"data: {len(dataset.events):,} events, {data.n_users:,} users, {data.n_items:,} "
          f"items in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return dataset, data


def batched_ms(model: Hybrid, requests: int, size: int) -> float:
    """Milliseconds a query of answering the first ``requests`` training users (the first 20
    left out) ``size`` at a time: what a server batching concurrent requests would pay."""
    blocks = [model.training_queries(np.arange(start, min(start + size, requests)))
              for start in range(20, requests, size)]
    for queries in blocks[:3]:  # warm-up
        model.recommend_queries(queries, 10)
    start = time.perf_counter()
    for queries in blocks:
        model.recommend_queries(queries, 10)
    return (time.perf_counter() - start) * 1000 / (requests - 20)


def profiled(model: Hybrid, data: TrainingData, requests: int, lines: int = 25) -> str:
    """cProfile of one answer at a time for the first ``requests`` training users: the
    functions that take the most time, their callees included."""
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for user in data.users.ids[:requests]:
        model.recommend_query(Query(user=str(user)), 10)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def answers_of(folder: str, args: argparse.Namespace) -> None:
    """In a process of its own, as a server has it (a version loaded, never a fit in it): one
    answer's time with every source scoring the catalogue, then from the graphs; with
    ``--batches``, queries answered several at a time; with ``--profile``, where the time of
    an answer from the graphs goes."""
    _, data = synthetic(args)
    pin_compute_threads()
    for graphs in (False, True):
        model = Recommender.load(folder, histories=data)
        assert isinstance(model, Hybrid)
        if not graphs:
            model.drop_indexes()
            print(f"- every source scores the whole catalogue: "
                  f"{answer_times(model, data, args.requests)}")
        else:
            tags = [s.tag for s in model.sources_ if s.model.indexes]
            print(f"- the sources with a vector form ({', '.join(tags)}) from their HNSW "
                  f"graphs: {answer_times(model, data, args.requests)}")
    if args.batches:
        sizes = [int(size) for size in args.batches.split(",")]
        print("- from the graphs, queries answered a block at a time (ms a query): " + ", ".join(
            f"{size} at a time {batched_ms(model, args.requests, size):.2f}"
            for size in sizes))
    if args.profile:
        print(f"\n```\n{profiled(model, data, args.requests)}```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events-per-user", type=float, default=50.0)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--ranker-users", type=int, default=2000)
    parser.add_argument("--ranker-epochs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--served", action="store_true")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", help="comma-separated block sizes: queries answered "
                        "that many at a time (e.g. 1,2,4,8,16)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile of the answers from the graphs")
    parser.add_argument("--answers-of", help=argparse.SUPPRESS)  # the timing process
    args = parser.parse_args()
    if args.answers_of:
        answers_of(args.answers_of, args)
        return
    print(f"```\npython benchmarks/bench_hybrid_cost.py {' '.join(sys.argv[1:])}\n```\n")
    dataset, data = synthetic(args)
    started = time.perf_counter()
    model = hybrid_at_scale(args.candidates, args.ranker_users, args.ranker_epochs).fit(data)
    fit_s = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"fit: {fit_s:.0f} s, peak RSS {peak_gb:.1f} GB; sources "
          f"{[s.tag for s in model.sources_]}", file=sys.stderr)

    started = time.perf_counter()
    model.build_index()
    built_s = time.perf_counter() - started
    lengths = np.diff(data.feedback.indptr)[:args.requests]
    print(f"{data.n_items:,} items, {args.candidates} candidates from "
          f"{len(model.sources_)} sources, fit {fit_s:.0f} s (ranker on {args.ranker_users} "
          f"users, {args.ranker_epochs} epochs), peak RSS {peak_gb:.1f} GB; the sources' "
          f"HNSW graphs built in {built_s:.0f} s.\n")
    print(f"One answer in-process, in a process that loads the version as a server does "
          f"({args.requests - 20} users, histories of {int(np.median(lengths))} distinct items "
          f"at the median, {int(np.percentile(lengths, 90))} at p90, {lengths.max()} the "
          f"most):\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="recengine-hybrid-cost-") as saved:
        model.save(saved)
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--answers-of", saved],
                       check=True)
    if not args.served:
        return
    folder = Path(tempfile.mkdtemp(prefix="recengine-hybrid-cost-"))
    try:
        registry = ModelRegistry(folder / "registry")
        fallback = Popularity().fit(data)
        registry.activate(registry.publish({"hybrid": model, "popularity": fallback},
                                           data={"events": len(dataset.events)}, metrics={}))
        world = World(folder, registry, {"hybrid": model}, dataset.events, dataset.items,
                      [str(u) for u in data.users.ids[:1000]],
                      [str(i) for i in data.items.ids[:1000]])
        url = f"sqlite:///{folder / 'events.db'}"
        fill(world, url)
        results = Results()
        for name, env in (("cache off", {"RECENGINE_CACHE_USERS": "0"}),
                          ("default server", {})):
            with serving(world, url, env) as base:
                results.read(world, base, "sqlite", f"hybrid, {name}", name, args)
            ratios = results.ratios[f"hybrid, {name}"]
            answers = results.rows[f"hybrid, {name}", "sqlite"]
            print(f"\nServed ({name}, wrk -t2 -c{args.connections} -d{args.seconds}s over "
                  f"{len(world.users)} users): {answers['rps']:.0f} answers/s, p50 "
                  f"{answers['p50_ms']:.1f} ms, p99 {answers['p99_ms']:.1f} ms; "
                  f"{', '.join(f'{r:.1%}' for r in ratios)} of the same server's /healthz "
                  f"throughput (median {statistics.median(ratios):.1%}).")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

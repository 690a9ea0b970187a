"""Top-10 for one user at a time, as a server answers: exact scoring against the HNSW graph.

Fits WALS on a synthetic catalogue (100,000 rentals, 64 factors by default), then, for the same
random users (seen items excluded), times one single-user top-10 at a time on one thread:

- recengine exact: every item scored, then the top-k;
- implicit's ``recommend`` with the same factors (its brute-force single-user path);
- recengine with the HNSW graph (``build_index``) at several search depths ``ef_search``,
  with recall@10 against the exact lists.

Then the same for the 10 items most similar to one item with events (cosine of item factors, the
item itself left out): recengine exact, implicit's ``similar_items``, and recengine's
similar-items graph.

    python benchmarks/bench_retrieval.py --items 100000 --users 20000 --factors 64

Between queries a 120 MB buffer is read every 50 queries, so the catalogue is not always in the
CPU cache, as in a server that does other work between requests.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from bench_serving import SERVED
from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS
from recengine.models.retrieval import recall
from recengine.pipeline.prepare import training_data


def timed(queries: np.ndarray, answer, flush: np.ndarray) -> tuple[np.ndarray, float]:
    """Each query's top-10 from ``answer(query)``, and the mean milliseconds per query."""
    lists, total = [], 0.0
    for k, query in enumerate(queries):
        if k % 50 == 0:
            flush[::16].sum()
        start = time.perf_counter()
        lists.append(answer(int(query)))
        total += time.perf_counter() - start
    return np.array(lists), total / len(queries) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    print(f"```\npython benchmarks/bench_retrieval.py {' '.join(sys.argv[1:])}\n```\n")
    dataset = generate(n_users=args.users, n_items=args.items, seed=0, mean_events_per_user=20)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    model = WALS(**SERVED, factors=args.factors).fit(data)
    users = np.random.default_rng(1).choice(data.n_users, args.queries, replace=False)
    flush = np.ones(30_000_000, np.float32)

    from implicit.cpu.als import AlternatingLeastSquares

    reference = AlternatingLeastSquares(factors=args.factors, random_state=0)
    reference.user_factors, reference.item_factors = model.user_factors_, model.item_factors_
    seen = sp.csr_matrix(data.feedback)  # implicit takes the matrix class only

    rows, similar = [], []
    # Items someone chose: an item nobody chose has factors of about 0, and its cosine
    # neighbours are rounding noise in either library.
    chosen = np.flatnonzero(np.bincount(data.feedback.indices, minlength=data.n_items))
    items = np.random.default_rng(2).choice(chosen, args.queries, replace=False)
    with threadpool_limits(1):
        exact, exact_ms = timed(users, lambda u: model.recommend_indices(np.array([u]), 10)[0][0],
                                flush)
        rows.append(("recengine exact", exact_ms, 1.0))
        ref, ref_ms = timed(users, lambda u: reference.recommend(u, seen[u], N=10)[0], flush)
        rows.append(("implicit recommend (exact)", ref_ms, recall(ref, exact)))
        exact_sim, exact_sim_ms = timed(items, lambda i: model._similar_exact(np.array([i]), 10)
                                        [0][0], flush)
        similar.append(("recengine exact", exact_sim_ms, 1.0))
        ref_sim, ref_sim_ms = timed(items, lambda i: _without(
            reference.similar_items(i, N=11)[0], i), flush)
        similar.append(("implicit similar_items (exact)", ref_sim_ms, recall(ref_sim, exact_sim)))
        start = time.perf_counter()
        model.build_index()
        build_s = time.perf_counter() - start
        for ef in (16, 32, 64, 128):
            for index in model.indexes:
                index.ef_search = ef
            got, ms = timed(users, lambda u: model.recommend_indices(np.array([u]), 10)[0][0],
                            flush)
            rows.append((f"recengine HNSW, ef_search={ef}", ms, recall(got, exact)))
            got, ms = timed(items, lambda i: model._similar_approximate(np.array([i]), 10)[0][0],
                            flush)
            similar.append((f"recengine HNSW, ef_search={ef}", ms, recall(got, exact_sim)))
    print(f"{data.n_items:,} items, {data.n_users:,} users, {args.factors} factors; "
          f"{args.queries} single-user (single-item) queries on one thread; both HNSW graphs "
          f"(M=16) built in {build_s:.1f} s.\n")
    _table("top-10 for one user", rows, ref_ms)
    print()
    _table("10 most similar to one item", similar, ref_sim_ms)


def _without(found: np.ndarray, item: int) -> np.ndarray:
    """implicit lists the item itself among its neighbours: the other ten."""
    return found[found != item][:10]


def _table(what: str, rows: list[tuple[str, float, float]], reference_ms: float) -> None:
    print(f"| {what} | ms per query | × implicit's time | recall@10 vs exact |")
    print("|---|---:|---:|---:|")
    for name, ms, rec in rows:
        print(f"| {name} | {ms:.3f} | {ms / reference_ms:.2f} | {rec:.4f} |")


if __name__ == "__main__":
    main()

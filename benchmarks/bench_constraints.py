"""How fast a Catalog evaluates a realistic knowledge-based query over a 100k-item catalogue.

What is measured
----------------
A synthetic rental catalogue (``recengine.data.synthetic.generate`` with ``--items`` listings and
a token number of users, since only the item table is used) is turned into a
:class:`~recengine.models.constraints.Catalog` once; that build is timed on its own. Then, after
``--warmup`` untimed calls, each of these runs ``--repeats`` times and its median and p99 are
reported in milliseconds:

- ``mask``: the parsed query over every item, the operation a request pays;
- ``parse + mask``: from the query's string form, and from its JSON form;
- each requirement of the query alone, to see where the time goes;
- ``preference scores``: three weighted preferences;
- ``relax``: an impossible variant of the query (also 6+ bedrooms under 60 a night), which
  evaluates every requirement and every single and pair drop.

The query: 3+ bedrooms, at most 200 a night, pets allowed, in one of two regions, within 80 km of
a point near the centre of Alpine Lakes. The target is a median ``mask`` under 10 ms at 100k items.
Timings use ``time.perf_counter`` around single calls, in one process, NumPy on one thread.

Usage::

    python benchmarks/bench_constraints.py
    python benchmarks/bench_constraints.py --items 20000 --repeats 200 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from recengine.data.synthetic import generate  # noqa: E402
from recengine.models.constraints import (  # noqa: E402
    Catalog,
    conjuncts,
    constraint_to_json,
    parse_constraint,
    parse_preferences,
    relax,
)

QUERY = ('bedrooms >= 3 and price_per_night <= 200 and amenities has "pets allowed" and '
         'region in ("Alpine Lakes", "Highlands") and near(46.6, 8.1, 80)')
IMPOSSIBLE = f"{QUERY} and bedrooms >= 6 and price_per_night <= 60"
PREFERENCES = ('prefer 2: amenities has "hot tub"; 1: amenities has any ("fireplace", '
               '"ski-in"); 0.5: listed_date >= "2024-01-01"')
TARGET_MS = 10.0


def timed(call: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    """Median and p99 in milliseconds of ``repeats`` single calls, after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    times = np.empty(repeats)
    for k in range(repeats):
        start = time.perf_counter()
        call()
        times[k] = time.perf_counter() - start
    ms = times * 1000
    return {"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def build(n_items: int, seed: int) -> tuple[Catalog, dict[str, float]]:
    start = time.perf_counter()
    dataset = generate(n_users=50, n_items=n_items, seed=seed)
    generated = time.perf_counter() - start
    start = time.perf_counter()
    catalog = Catalog(dataset.items, dataset.item_features)
    built = time.perf_counter() - start
    return catalog, {"generate_s": generated, "catalog_build_s": built}


def measure(catalog: Catalog, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    query = parse_constraint(QUERY)
    as_json = constraint_to_json(query)
    preferences = parse_preferences(PREFERENCES)
    rows = {
        "mask": timed(lambda: catalog.mask(query), repeats, warmup),
        "parse + mask (string)": timed(lambda: catalog.mask(QUERY), repeats, warmup),
        "parse + mask (JSON)": timed(lambda: catalog.mask(as_json), repeats, warmup),
    }
    for part in conjuncts(query):
        rows[f"only `{part}`"] = timed(lambda part=part: catalog.mask(part), repeats, warmup)
    rows["preference scores (3)"] = timed(lambda: catalog.preference_scores(preferences),
                                          repeats, warmup)
    rows["relax (7 requirements)"] = timed(lambda: relax(catalog, IMPOSSIBLE),
                                           max(1, repeats // 10), warmup)
    return rows


def report(catalog: Catalog, setup: dict[str, float], rows: dict[str, dict[str, float]]) -> None:
    print(f"Catalogue: {catalog.n_items:,} synthetic rentals (generated in "
          f"{setup['generate_s']:.2f} s); Catalog built once in "
          f"{setup['catalog_build_s'] * 1000:.0f} ms.\n")
    print(f"Query: `{QUERY}` matches {catalog.count(QUERY):,} items.\n")
    best = relax(catalog, IMPOSSIBLE)[:2]
    print(f"Impossible variant: `{IMPOSSIBLE}`; best relaxations: "
          + "; ".join(f"drop {' and '.join(r.dropped)} → {r.count:,} items" for r in best)
          + ".\n")
    print("| operation | median ms | p99 ms |")
    print("| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| {name} | {row['median_ms']:.3f} | {row['p99_ms']:.3f} |")
    median = rows["mask"]["median_ms"]
    verdict = "met" if median < TARGET_MS else "MISSED"
    print(f"\nTarget: median mask under {TARGET_MS:.0f} ms: {verdict} ({median:.2f} ms).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--repeats", type=int, default=500, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/bench_constraints.py", *sys.argv[1:]])
    print(f"```\n{command}\n```\n")
    catalog, setup = build(args.items, args.seed)
    rows = measure(catalog, args.repeats, args.warmup)
    report(catalog, setup, rows)
    if args.json:
        args.json.write_text(json.dumps({"items": args.items, "query": QUERY, **setup,
                                         "timings": rows}, indent=2))


if __name__ == "__main__":
    main()

"""recengine WALS against implicit's ALS: same data, same objective, same threads, same run.

What is measured
----------------
- ``--synthetic``: wall time of ``fit`` (best of ``--repeats``) and peak resident memory during
  training, on a seeded power-law matrix of about 100k users × 20k items × 3M pairs (Zipf-like
  item popularity, lognormal user activity, feedback ``r = 1 + Poisson(1)``), at each of
  ``--factors``. ``--scale`` shrinks users, items and pairs proportionally.
- ``--datasets``: the same on MovieLens 100K and Last.fm 2K, loaded and aggregated by recengine.
- ``--recommend``: top-10 for every user of the synthetic matrix, seen items excluded, each
  library with its own trained model and its own batching.
- ``--fold-in``: a user known only by 100 items. recengine ``fold_in`` against implicit
  ``recalculate_user`` (the vector only), and recengine ``recommend_history`` against implicit
  ``recommend(..., recalculate_user=True)`` (vector and top-10): median and p99 of 200 calls.
Without any of these flags all four run.

Why the comparison is fair
--------------------------
Both libraries minimise ``Σ_observed c_ui (1 − x_u·y_i)² + Σ_unobserved (x_u·y_i)² +
λ(‖X‖² + ‖Y‖²)``. recengine (implicit feedback, ``unobserved_weight=1``) uses ``c = 1 + α r``;
implicit uses ``c = alpha_implicit · C`` for the matrix ``C`` given to ``fit``. So implicit gets
``C = 1 + α r`` (same sparsity) with ``alpha=1.0`` and recengine gets ``r`` with ``alpha=α``:
the objectives are identical. Both use conjugate gradient with the same number of steps
(implicit's ``cg_steps`` is 3), float32 factors and the same regularisation; only the random
initial factors differ. Before timing, a check trains both (and recengine's exact Cholesky solver
as a reference) on MovieLens 100K (or a small synthetic matrix if it is not found) and prints the
objective value of each, computed here by one function, and nDCG@10 on a random 20 % hold-out.

Threads: BLAS is pinned to 1 thread (``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` set before
numpy is imported, and threadpoolctl), and both libraries run their own parallel loops on
``--threads`` (default 2) threads: numba through the WALS config, OpenMP through implicit's
``num_threads``. The ``cpu/wall`` column shows how many cores each fit kept busy. Note that
recengine scores users with a NumPy matrix product, so its ``--recommend`` runs on the single BLAS
thread, while implicit's top-k uses its ``num_threads``.

Each library runs in its own subprocess (this script with ``--worker``), so imports, caches and
memory never mix. The worker first fits a tiny matrix, so numba compilation (or cache loading) is
excluded from every time. Memory is the peak RSS during ``fit`` (Linux: the high-water mark is reset
just before training via ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, which then includes
everything before), and its growth over the RSS just before ``fit`` (data already loaded).

Usage::

    python benchmarks/bench_wals.py --synthetic --factors 64,128,256
    python benchmarks/bench_wals.py --scale 0.05 --json /tmp/bench.json   # quick, everything
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FULL_USERS, FULL_ITEMS, FULL_PAIRS = 100_000, 20_000, 3_000_000
DATASETS = {"movielens-100k": "ml-100k", "lastfm-2k": "hetrec2011-lastfm-2k"}
LIBRARIES = ("recengine", "implicit")
FOLD_IN_CALLS, FOLD_IN_ITEMS, FOLD_IN_WARMUP = 200, 100, 5
TOP_N = 10


@dataclass(frozen=True)
class Params:
    """Training parameters shared by both libraries (``alpha`` is recengine's α)."""

    factors: int = 64
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 2.0
    cg_steps: int = 3
    threads: int = 2
    seed: int = 0


# --- data ------------------------------------------------------------------------------------


def synthetic_feedback(scale: float, seed: int) -> sp.csr_array:
    """A seeded power-law feedback matrix ``r`` (float32 CSR, sorted, unique pairs)."""
    rng = np.random.default_rng(seed)
    n_users = max(round(FULL_USERS * scale), 50)
    n_items = max(round(FULL_ITEMS * scale), 20)
    target = min(max(round(FULL_PAIRS * scale), 500), n_users * n_items // 2)
    item_p = rng.permutation(1.0 / np.arange(1, n_items + 1) ** 0.9)
    user_p = rng.lognormal(0.0, 1.0, n_users)
    keys = _draw_pairs(rng, user_p / user_p.sum(), item_p / item_p.sum(), target)
    values = (1 + rng.poisson(1.0, len(keys))).astype(np.float32)
    rows, cols = np.divmod(keys, n_items)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    return sp.csr_array((values, cols.astype(np.int32), indptr), shape=(n_users, n_items))


def _draw_pairs(rng: np.random.Generator, user_p: np.ndarray, item_p: np.ndarray,
                target: int) -> np.ndarray:
    """``target`` distinct sorted keys ``user * n_items + item``, redrawing duplicates."""
    n_items = len(item_p)
    keys = np.empty(0, dtype=np.int64)
    for _ in range(20):
        need = target - len(keys)
        if need <= 0:
            break
        size = int(need * 1.2) + 16
        drawn = rng.choice(len(user_p), size, p=user_p) * n_items + rng.choice(n_items, size,
                                                                               p=item_p)
        keys = np.unique(np.concatenate([keys, drawn]))
    return np.sort(rng.permutation(keys)[:target])


def dataset_feedback(name: str, folder: Path) -> sp.csr_array:
    """A real dataset's feedback matrix, loaded and aggregated as recengine does."""
    from recengine.data.loaders import load_dataset
    from recengine.data.training_data import TrainingData
    from recengine.data.weighting import aggregate

    dataset, _ = load_dataset(name, folder)
    pairs = aggregate(dataset.events, dataset.schema)
    return TrainingData.from_interactions(pairs).feedback


def confidence(r: sp.csr_array, alpha: float) -> sp.csr_matrix:
    """implicit's input: ``C = 1 + α r`` on the same sparsity (fit with implicit ``alpha=1``)."""
    c = sp.csr_matrix(r, dtype=np.float32, copy=True)
    c.data = (1.0 + alpha * c.data).astype(np.float32)
    return c


def training_data(r: sp.csr_array) -> Any:
    """recengine ``TrainingData`` over ``r``, ids being the indices as strings."""
    from recengine.data.training_data import TrainingData
    from recengine.data.vocabulary import Vocabulary

    n_users, n_items = r.shape
    return TrainingData(users=Vocabulary(np.arange(n_users).astype(str), name="user"),
                        items=Vocabulary(np.arange(n_items).astype(str), name="item"),
                        feedback=sp.csr_array(r, dtype=np.float32),
                        ratings=sp.csr_array(r.shape, dtype=np.float32))


def holdout(r: sp.csr_array, fraction: float, seed: int) -> tuple[sp.csr_array, sp.csr_array]:
    """Random per-pair split of ``r`` into train and test matrices."""
    coo = sp.coo_array(r)
    test = np.random.default_rng(seed).random(coo.nnz) < fraction

    def part(mask: np.ndarray) -> sp.csr_array:
        m = sp.csr_array((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=r.shape)
        m.sort_indices()
        return m

    return part(~test), part(test)


# --- the two libraries -----------------------------------------------------------------------


def fit_recengine(r: sp.csr_array, p: Params, *, solver: str = "cg", data: Any = None) -> Any:
    from recengine.models.wals import WALS

    model = WALS(factors=p.factors, iterations=p.iterations, regularization=p.regularization,
                 alpha=p.alpha, unobserved_weight=1.0, solver=solver, cg_steps=p.cg_steps,
                 random_state=p.seed, num_threads=p.threads, feedback="implicit",
                 confidence="raw", item_weight_exponent=0.0)  # implicit's objective
    return model.fit(data if data is not None else training_data(r))


def fit_implicit(c: sp.csr_matrix, p: Params) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=p.factors, regularization=p.regularization,
                                    alpha=1.0, iterations=p.iterations, use_cg=True,
                                    calculate_training_loss=False, random_state=p.seed,
                                    num_threads=p.threads, dtype=np.float32)
    model.cg_steps = p.cg_steps
    model.fit(c, show_progress=False)
    return model


def factors_of(model: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(model, "user_factors_"):
        return model.user_factors_, model.item_factors_
    return model.user_factors, model.item_factors


def top_n(model: Any, train: sp.csr_array, users: np.ndarray) -> np.ndarray:
    """Top-``TOP_N`` item indices per user, seen items excluded."""
    if hasattr(model, "user_factors_"):
        return model.recommend_indices(users, TOP_N)[0]
    c = sp.csr_matrix(train[users])
    return model.recommend(users, c, N=TOP_N, filter_already_liked_items=True)[0]


# --- quality measures ------------------------------------------------------------------------


def objective(X: np.ndarray, Y: np.ndarray, r: sp.csr_array, p: Params) -> float:
    """``Σ_obs c(1 − x·y)² + Σ_unobs (x·y)² + λ(‖X‖² + ‖Y‖²)`` with ``c = 1 + α r``.

    Uses ``Σ_all (x·y)² = tr(XᵀX · YᵀY)`` and corrects the observed cells.
    """
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    rows = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
    pred = np.einsum("ij,ij->i", X[rows], Y[r.indices])
    c = 1.0 + p.alpha * r.data.astype(np.float64)
    every = float(np.sum((X.T @ X) * (Y.T @ Y)))
    observed = float(np.sum(c * (1.0 - pred) ** 2 - pred**2))
    return every + observed + p.regularization * float(np.sum(X**2) + np.sum(Y**2))


def ndcg(top: np.ndarray, test: sp.csr_array) -> float:
    """Mean binary nDCG over users with test items."""
    users = np.flatnonzero(np.diff(test.indptr))
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    scores = []
    for u in users:
        relevant = test.indices[test.indptr[u]:test.indptr[u + 1]]
        gains = np.isin(top[u], relevant)
        ideal = discount[:min(len(relevant), top.shape[1])].sum()
        scores.append(float(gains @ discount) / ideal)
    return float(np.mean(scores))


def equivalence_check(r: sp.csr_array, p: Params, source: str) -> list[dict[str, Any]]:
    """Train both (and exact recengine) on a hold-out split; objective and nDCG@10 of each."""
    train, test = holdout(r, 0.2, p.seed)
    users = np.arange(r.shape[0])
    runs = {"recengine WALS (CG)": lambda: fit_recengine(train, p),
            "implicit ALS (CG)": lambda: fit_implicit(confidence(train, p.alpha), p),
            "recengine WALS (Cholesky, exact)": lambda: fit_recengine(train, p,
                                                                       solver="cholesky")}
    rows = []
    for label, fit in runs.items():
        start = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - start
        X, Y = factors_of(model)
        rows.append({"model": label, "data": source, "objective": objective(X, Y, train, p),
                     "ndcg@10": ndcg(top_n(model, train, users), test), "fit_s": seconds})
    return rows


# --- worker: one library, one matrix, in its own process -------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb(reset_ok: bool) -> float:
    hwm = _status_kb("VmHWM") if reset_ok else None
    if hwm is not None:
        return hwm / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fit_once(library: str, r: sp.csr_array, p: Params, prepared: Any) -> Any:
    if library == "recengine":
        return fit_recengine(r, p, data=prepared)
    return fit_implicit(prepared, p)


def _prepare(library: str, r: sp.csr_array, p: Params) -> Any:
    return training_data(r) if library == "recengine" else confidence(r, p.alpha)


def _warm_up(library: str, p: Params) -> None:
    """Fit (and fold in on) a tiny matrix so compilation never lands in a timing."""
    tiny = synthetic_feedback(0.002, p.seed + 1)
    small = replace(p, iterations=2)
    model = _fit_once(library, tiny, small, _prepare(library, tiny, small))
    _fold_in_times(library, model, tiny, p, calls=2, warmup=1)


def _timed_fits(library: str, r: sp.csr_array, p: Params,
                repeats: int) -> tuple[Any, dict[str, float]]:
    prepared = _prepare(library, r, p)
    before_mb = (_status_kb("VmRSS") or 0) / 1024
    reset_ok = _reset_peak()
    best, cpu, model = float("inf"), 0.0, None
    for _ in range(repeats):
        model = None  # free the previous model before the next fit
        cpu0, start = _cpu_seconds(), time.perf_counter()
        model = _fit_once(library, r, p, prepared)
        seconds = time.perf_counter() - start
        if seconds < best:
            best, cpu = seconds, _cpu_seconds() - cpu0
    peak = _peak_mb(reset_ok)
    return model, {"fit_s": best, "cpu_per_wall": cpu / best, "peak_mb": peak,
                   "growth_mb": peak - before_mb, "peak_method": "VmHWM" if reset_ok
                   else "ru_maxrss"}


def _recommend_seconds(library: str, model: Any, r: sp.csr_array, repeats: int) -> float:
    users = np.arange(r.shape[0])
    c = sp.csr_matrix(r)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        if library == "recengine":
            model.recommend_indices(users, TOP_N)
        else:
            model.recommend(users, c, N=TOP_N, filter_already_liked_items=True)
        best = min(best, time.perf_counter() - start)
    return best


def _fold_in_histories(n_items: int, calls: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = min(FOLD_IN_ITEMS, n_items)
    return [np.sort(rng.choice(n_items, size, replace=False)) for _ in range(calls)]


def _fold_in_ops(library: str, model: Any, n_items: int,
                 p: Params) -> dict[str, Any]:
    """Per operation name, a function of one history (item indices) doing that operation."""
    if library == "recengine":
        return {"fold-in vector": lambda h: model.fold_in(h.astype(str).tolist()),
                "fold-in + top-10": lambda h: model.recommend_history(h.astype(str).tolist(),
                                                                      TOP_N)}

    def row(h: np.ndarray) -> sp.csr_matrix:
        data = np.full(len(h), 1.0 + p.alpha, dtype=np.float32)  # r = 1, as recengine's list
        return sp.csr_matrix((data, h.astype(np.int32), [0, len(h)]), shape=(1, n_items))

    return {"fold-in vector": lambda h: model.recalculate_user(0, row(h)),
            "fold-in + top-10": lambda h: model.recommend(0, row(h), N=TOP_N,
                                                          recalculate_user=True)}


def _fold_in_times(library: str, model: Any, r: sp.csr_array, p: Params, *,
                   calls: int = FOLD_IN_CALLS, warmup: int = FOLD_IN_WARMUP) -> dict[str, Any]:
    histories = _fold_in_histories(r.shape[1], calls + warmup, p.seed)
    out = {}
    for name, op in _fold_in_ops(library, model, r.shape[1], p).items():
        times = []
        for k, h in enumerate(histories):
            start = time.perf_counter()
            op(h)
            if k >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        out[name] = {"median_ms": float(np.median(times)),
                     "p99_ms": float(np.percentile(times, 99)), "calls": len(times)}
    return out


def run_worker(job_path: str) -> None:
    """Entry point of a subprocess: the job is a JSON file, the result goes to stdout."""
    job = json.loads(Path(job_path).read_text())
    library, p = job["library"], Params(**job["params"])
    threadpool_limits(1, user_api="blas")
    _warm_up(library, p)
    with np.load(job["matrix"], allow_pickle=False) as z:
        r = sp.csr_array((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    model, result = _timed_fits(library, r, p, job["repeats"])
    if job["recommend"]:
        result["recommend_s"] = _recommend_seconds(library, model, r, job["repeats"])
    if job["fold_in"]:
        result["fold_in"] = _fold_in_times(library, model, r, p)
    print(json.dumps(result))


# --- parent: jobs, tables --------------------------------------------------------------------


def save_matrix(r: sp.csr_array, folder: Path, name: str) -> Path:
    path = folder / f"{name}.npz"
    np.savez(path, data=r.data, indices=r.indices, indptr=r.indptr, shape=np.array(r.shape))
    return path


def run_job(library: str, matrix: Path, p: Params, repeats: int, *, recommend: bool = False,
            fold_in: bool = False) -> dict[str, Any]:
    job = {"library": library, "matrix": str(matrix), "params": asdict(p), "repeats": repeats,
           "recommend": recommend, "fold_in": fold_in}
    job_path = matrix.with_name(f"job-{library}.json")
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                           str(job_path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{library} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(label: str, r: sp.csr_array, p: Params, repeats: int, folder: Path,
            **extra: bool) -> dict[str, Any]:
    """Both libraries on one matrix, each in its own subprocess."""
    matrix = save_matrix(r, folder, "matrix")
    results = {lib: run_job(lib, matrix, p, repeats, **extra) for lib in LIBRARIES}
    return {"data": label, "users": r.shape[0], "items": r.shape[1], "pairs": r.nnz,
            "factors": p.factors, "repeats": repeats, **results}


def fit_row(res: dict[str, Any]) -> list[str]:
    re_, im = res["recengine"], res["implicit"]
    return [res["data"], f"{res['users']:,}", f"{res['items']:,}", f"{res['pairs']:,}",
            str(res["factors"]), f"{re_['fit_s']:.2f}", f"{im['fit_s']:.2f}",
            f"{re_['fit_s'] / im['fit_s']:.2f}", f"{re_['cpu_per_wall']:.1f}",
            f"{im['cpu_per_wall']:.1f}", f"{re_['peak_mb']:.0f} (+{re_['growth_mb']:.0f})",
            f"{im['peak_mb']:.0f} (+{im['growth_mb']:.0f})"]


FIT_HEADER = ["data", "users", "items", "pairs", "factors", "recengine s", "implicit s",
              "ratio re/im", "re cpu/wall", "im cpu/wall", "recengine peak MB (+fit)",
              "implicit peak MB (+fit)"]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def environment() -> dict[str, Any]:
    import numba
    import scipy

    blas = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__,
            "implicit": _version("implicit"), "recengine": _version("recengine"),
            "cpus": os.cpu_count(), "machine": platform.machine(), "blas": blas,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# --- sections --------------------------------------------------------------------------------


def section_check(args: argparse.Namespace, p: Params, report: dict[str, Any]) -> None:
    folder = args.datasets_dir / DATASETS["movielens-100k"]
    if folder.is_dir():
        r, source = dataset_feedback("movielens-100k", folder), "movielens-100k"
    else:
        r, source = synthetic_feedback(0.01, p.seed), "synthetic scale 0.01"
    rows = equivalence_check(r, replace(p, factors=64), source)
    report["check"] = rows
    print(f"\n## Equivalence check ({source}, 64 factors, 80/20 random split, in-process)\n")
    print("Same objective for both; they should reach similar values (initial factors differ).\n")
    print(markdown(["model", "objective (train)", "nDCG@10 (test)", "fit s"],
                   [[row["model"], f"{row['objective']:.1f}", f"{row['ndcg@10']:.4f}",
                     f"{row['fit_s']:.2f}"] for row in rows]))


def section_synthetic(args: argparse.Namespace, p: Params, r: sp.csr_array, folder: Path,
                      report: dict[str, Any]) -> None:
    results = []
    for k in args.factors if args.synthetic else args.factors[:1]:
        extra = {"recommend": args.recommend and k == args.factors[0],
                 "fold_in": args.fold_in and k == args.factors[0]}
        results.append(compare(f"synthetic ×{args.scale:g}", r, replace(p, factors=k),
                               args.repeats or 1, folder, **extra))
    report["synthetic"] = results
    if args.synthetic:
        print(f"\n## fit: synthetic (best of {args.repeats or 1})\n")
        print(markdown(FIT_HEADER, [fit_row(res) for res in results]))
    section_recommend(results[0], args)
    section_fold_in(results[0], args)


def section_recommend(res: dict[str, Any], args: argparse.Namespace) -> None:
    if not args.recommend:
        return
    re_, im = res["recengine"]["recommend_s"], res["implicit"]["recommend_s"]
    print(f"\n## recommend: top-{TOP_N} for all {res['users']:,} users, seen excluded\n")
    print(markdown(["data", "factors", "recengine s", "implicit s", "ratio re/im"],
                   [[res["data"], str(res["factors"]), f"{re_:.2f}", f"{im:.2f}",
                     f"{re_ / im:.2f}"]]))


def section_fold_in(res: dict[str, Any], args: argparse.Namespace) -> None:
    if not args.fold_in:
        return
    rows = []
    for op, stats in res["recengine"]["fold_in"].items():
        im = res["implicit"]["fold_in"][op]
        rows.append([op, str(res["factors"]), f"{stats['median_ms']:.2f}",
                     f"{stats['p99_ms']:.2f}", f"{im['median_ms']:.2f}", f"{im['p99_ms']:.2f}",
                     f"{stats['median_ms'] / im['median_ms']:.2f}"])
    print(f"\n## fold-in: one user with {FOLD_IN_ITEMS} items, {FOLD_IN_CALLS} calls, ms\n")
    print("recengine `fold_in` / `recommend_history` vs implicit `recalculate_user` / "
          "`recommend(recalculate_user=True)`.\n")
    print(markdown(["operation", "factors", "re median", "re p99", "im median", "im p99",
                    "median ratio re/im"], rows))


def section_datasets(args: argparse.Namespace, p: Params, folder: Path,
                     report: dict[str, Any]) -> None:
    results = []
    for name, sub in DATASETS.items():
        r = dataset_feedback(name, args.datasets_dir / sub)
        for k in args.factors:
            results.append(compare(name, r, replace(p, factors=k), args.repeats or 3, folder))
    report["datasets"] = results
    print(f"\n## fit: datasets (best of {args.repeats or 3})\n")
    print(markdown(FIT_HEADER, [fit_row(res) for res in results]))


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", action="store_true", help="fit on the synthetic matrix")
    parser.add_argument("--datasets", action="store_true", help="fit on ML100K and Last.fm 2K")
    parser.add_argument("--recommend", action="store_true", help="top-10 for all users")
    parser.add_argument("--fold-in", action="store_true", help="fold-in latency")
    parser.add_argument("--factors", type=_int_list, default=[64],
                        help="comma-separated, e.g. 64,128,256 (recommend/fold-in use the first)")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=2.0, help="recengine's α in c = 1 + α r")
    parser.add_argument("--cg-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="for both libraries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink the synthetic matrix (users, items and pairs)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="best of N fits and recommends (default: 1 synthetic, 3 datasets)")
    parser.add_argument("--datasets-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--skip-check", action="store_true", help="skip the equivalence check")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.synthetic or args.datasets or args.recommend or args.fold_in):
        args.synthetic = args.datasets = args.recommend = args.fold_in = True
    return args


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker)
        return
    threadpool_limits(1, user_api="blas")
    p = Params(iterations=args.iterations, regularization=args.regularization, alpha=args.alpha,
               cg_steps=args.cg_steps, threads=args.threads, seed=args.seed)
    report: dict[str, Any] = {"command": shlex.join(["python", *sys.argv]),
                              "environment": environment(), "params": asdict(p)}
    print(f"# WALS benchmark\n\n```\n{report['command']}\n```\n")
    print("Environment: " + json.dumps(report["environment"]))
    print(f"Parameters: {json.dumps(asdict(p))}; implicit gets C = 1 + alpha·r with alpha=1.0.")
    print("Each library runs in its own subprocess after a warm-up fit on a tiny matrix "
          "(numba compile time excluded); BLAS pinned to 1 thread.")
    if not args.skip_check:
        section_check(args, p, report)
    with tempfile.TemporaryDirectory(prefix="bench_wals_") as tmp:
        if args.synthetic or args.recommend or args.fold_in:
            r = synthetic_feedback(args.scale, args.seed)
            section_synthetic(args, p, r, Path(tmp), report)
        if args.datasets:
            section_datasets(args, p, Path(tmp), report)
    print(f"\nLoad average at the end: {[round(x, 2) for x in os.getloadavg()]} "
          f"(other work on the machine makes times noisy)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()

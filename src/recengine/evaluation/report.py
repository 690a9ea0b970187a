"""Evaluation output for people and scripts: a printed table, a JSON file, and PNG plots.

The plots need the ``plots`` extra (matplotlib); without it the report is the JSON file alone
and says how to get the plots: the metrics are the result, the plots only show them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from rich.console import Console
from rich.table import Table

from recengine._extras import require
from recengine.errors import MissingExtraError
from recengine.evaluation.evaluator import GROUPS, EvaluationResult

__all__ = ["ReportFiles", "json_text", "print_table", "write_report"]

ACCURACY = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")  # metric name prefixes
BEYOND = ("coverage", "novelty", "diversity", "popularity")
CURVES = ("precision", "recall", "ndcg", "map")


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def print_table(result: EvaluationResult, console: Console, *, k: int | None = None) -> None:
    """Accuracy, beyond-accuracy and per-activity tables at ``k``, one row per model."""
    k = k or result.ks[-1]
    rated = any("rmse" in r.metrics for r in result.models.values())
    accuracy = Table(title=f"Ranking @{k}: {result.n_users} test users, {result.n_items} items "
                           "(full catalogue, seen items excluded)")
    for column in ("model", *ACCURACY, *(("rmse", "mae") if rated else ()), "fit s"):
        accuracy.add_column(column, justify="left" if column == "model" else "right")
    beyond = Table(title=f"Beyond accuracy @{k}")
    for column in ("model", *BEYOND):
        beyond.add_column(column, justify="left" if column == "model" else "right")
    groups = Table(title=f"ndcg@{k} by user activity ("
                         f"{', '.join(f'{g} {result.group_sizes[g]}' for g in GROUPS)} users)")
    for column in ("model", *GROUPS):
        groups.add_column(column, justify="left" if column == "model" else "right")
    for name, r in result.models.items():
        ratings = [_fmt(r.metrics.get("rmse")), _fmt(r.metrics.get("mae"))] if rated else []
        accuracy.add_row(name, *[_fmt(r.metrics.get(f"{m}@{k}")) for m in ACCURACY], *ratings,
                         f"{r.fit_seconds:.2f}")
        beyond.add_row(name, *[_fmt(r.metrics.get(f"{m}@{k}")) for m in BEYOND])
        groups.add_row(name, *[_fmt(r.by_activity[g].get(f"ndcg@{k}")) for g in GROUPS])
    for table in (accuracy, beyond, groups):
        console.print(table)
    _print_leads(result, console, k)


def _print_leads(result: EvaluationResult, console: Console, k: int) -> None:
    """How far the best model on nDCG@k is ahead of each other one, with the paired
    bootstrap's interval: whether the table's order would survive another draw of users."""
    best, leads = result.against_best(f"ndcg@{k}")
    if not leads:
        return
    level = next(iter(leads.values())).level
    table = Table(title=f"ndcg@{k}: {best}'s lead, paired bootstrap over the test users")
    for column in ("over", "lead", f"{level:.0%} interval", "draws not ahead"):
        table.add_column(column, justify="left" if column == "over" else "right")
    for name, d in leads.items():
        table.add_row(name, f"{d.mean:+.4f}", f"{d.low:+.4f} … {d.high:+.4f}",
                      f"{d.share_not_ahead:.1%}")
    console.print(table)


def _pyplot() -> ModuleType:
    """matplotlib's pyplot drawing to files only (no display needed), imported on first use."""
    matplotlib = require("matplotlib", extra="plots", feature="plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra="plots", feature="plotting")


def _plot_curves(plt: ModuleType, result: EvaluationResult, path: Path) -> None:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, metric in zip(axes, CURVES, strict=True):
        for name, r in result.models.items():
            ks = [k for k in result.curve_ks if f"{metric}@{k}" in r.metrics]
            ax.plot(ks, [r.metrics[f"{metric}@{k}"] for k in ks], marker="o", label=name)
        ax.set_xlabel("k")
        ax.set_title(f"{metric}@k")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_popularity(plt: ModuleType, result: EvaluationResult, path: Path, k: int) -> None:
    """Share of recommendations and of test consumption per item-popularity decile."""
    order = np.argsort(-result.item_popularity, kind="stable")
    decile = np.empty(len(order), dtype=np.int64)
    decile[order] = np.minimum(np.arange(len(order)) * 10 // max(len(order), 1), 9)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(10)
    consumed = np.bincount(decile, weights=result.test_item_counts, minlength=10)
    ax.plot(x, consumed / max(consumed.sum(), 1), color="black", lw=2, marker="s",
            label="consumed (test)")
    for name, r in result.models.items():
        rec = r.recommended[:, :k]
        counts = np.bincount(decile[rec[rec >= 0]], minlength=10)
        ax.plot(x, counts / max(counts.sum(), 1), marker="o", label=f"{name} top-{k}")
    ax.set_xticks(x, [f"{10 * i}–{10 * (i + 1)}%" for i in x], rotation=30, fontsize=8)
    ax.set_xlabel("items by training popularity (most popular decile first)")
    ax.set_ylabel("share")
    ax.set_title("Popularity of recommended vs consumed items")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote; without plots, ``plots_skipped`` says how to get them.

    >>> print(ReportFiles(Path("out/results.json"), (Path("out/popularity.png"),)))
    report: out/results.json; plots: out/popularity.png
    """

    json: Path
    plots: tuple[Path, ...]
    plots_skipped: str | None = None

    def __str__(self) -> str:
        plots = ", ".join(map(str, self.plots)) or f"skipped, {self.plots_skipped}"
        return f"report: {self.json}; plots: {plots}"


def write_report(result: EvaluationResult, out_dir: str | Path) -> ReportFiles:
    """Write ``results.json``, ``metrics_vs_k.png`` and ``popularity.png`` to ``out_dir``;
    the plots only where the ``plots`` extra is installed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json_text(result.to_dict()) + "\n")
    try:
        plt = _pyplot()
    except MissingExtraError as exc:
        return ReportFiles(results, (), plots_skipped=str(exc))
    curves, popularity = out / "metrics_vs_k.png", out / "popularity.png"
    _plot_curves(plt, result, curves)
    _plot_popularity(plt, result, popularity, result.ks[-1])
    return ReportFiles(results, (curves, popularity))


def _finite(value: object) -> object:
    """NaN becomes null: JSON has no NaN, and strict parsers reject it."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def json_text(value: object, *, indent: int | None = 2) -> str:
    """Valid JSON for reports and the command line (NaN → null, numpy scalars → numbers)."""
    return json.dumps(_finite(value), indent=indent, default=str)

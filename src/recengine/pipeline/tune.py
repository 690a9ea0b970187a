"""Hyper-parameter search on a validation split carved from the training data only.

The test part of the split is never seen while tuning: the training part is split again (same
protocol, another seed) into fit and validation, trials are scored on validation, and the best
configuration is written to a JSON file that ``evaluate`` and ``train`` read with ``--config``.
The search is optuna's multivariate TPE sampler, seeded, starting from the model's defaults,
within a trial and/or time budget.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from recengine._extras import require
from recengine.data.splits import Split
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.evaluation.evaluator import evaluate
from recengine.models.registry import model_class
from recengine.progress import ProgressCallback

__all__ = ["TuneResult", "read_config_file", "require_optuna", "tune", "write_config_file"]

Trial = Any  # optuna.Trial, imported lazily


#: A search dimension: (kind, low, high, log scale); see ``Recommender.search_space``.
Dimension = tuple[str, float, float, bool]


def _suggest(trial: Trial, space: dict[str, Dimension], fixed: dict[str, Any]) -> dict[str, Any]:
    """One trial's parameters: the fixed ones, and a draw for every other dimension."""
    params = dict(fixed)
    for key, (kind, low, high, log) in space.items():
        if key not in fixed:
            suggest = trial.suggest_int if kind == "int" else trial.suggest_float
            params[key] = suggest(key, low, high, log=log)
    return params


def require_optuna() -> ModuleType:
    """optuna, which the ``tune`` extra brings; imported here, on first use, since it takes
    half a second that no other command should pay. The command line calls it before loading
    any data, so a missing extra fails before any work."""
    return require("optuna", extra="tune", feature="tuning")


@dataclass(frozen=True)
class TuneResult:
    """The best configuration found, its validation score, and every trial."""

    model: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]


def tune(
    name: str,
    data: TrainingData,
    validation: Split,
    *,
    fixed: dict[str, Any] | None = None,
    metric: str = "ndcg@10",
    trials: int = 30,
    timeout: float | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> TuneResult:
    """Search the space ``name``'s class declares (``search_space``), fitting on ``data`` and
    scoring ``metric`` on ``validation``."""
    optuna = require_optuna()

    klass = model_class(name)
    fixed = dict(fixed or {})
    space = klass.search_space(fixed)
    if not space:
        raise DataError(f"{name} declares no search space (Recommender.search_space)",
                        column="--model")
    k = int(metric.rsplit("@", 1)[1]) if "@" in metric else 10
    higher = metric not in ("rmse", "mae")

    def objective(trial: Trial) -> float:
        params = _suggest(trial, space, fixed)
        result = evaluate({name: klass(**params)}, data, validation, ks=[k], curve_ks=[k])
        value = result.models[name].metrics.get(metric)
        if value is None:
            raise DataError(f"metric {metric!r} is not measured for {name}", column="--metric")
        if progress:
            progress(f"tuning {name} ({metric})", trial.number + 1, trials)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Multivariate TPE models the dimensions jointly (factors and λ interact); the first trial
    # is the model's defaults, so a short search never ends worse than not tuning.
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize" if higher else "minimize", sampler=sampler)
    defaults = klass.Config(**fixed).model_dump()  # e.g. explicit WALS starts at its own
    study.enqueue_trial({key: min(max(defaults[key], low), high)  # defaults, within the space
                         for key, (_, low, high, _) in space.items() if key not in fixed},
                        skip_if_exists=True)
    study.optimize(objective, n_trials=trials, timeout=timeout)
    return TuneResult(
        model=name, metric=metric, best_params=fixed | study.best_params,
        best_value=float(study.best_value),
        trials=[{"params": t.params, "value": t.value} for t in study.trials
                if t.value is not None])


def write_config_file(result: TuneResult, path: str | Path,
                      context: dict[str, Any]) -> Path:
    """The best configuration as ``{"model", "config", "validation"}`` JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": result.model, "config": result.best_params,
               "validation": {"metric": result.metric, "value": result.best_value, **context},
               "trials": result.trials}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_config_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(model name, config)`` from a file written by :func:`write_config_file`, or by hand:
    JSON, or TOML when the name ends in ``.toml`` (``model = "hybrid"`` and a ``[config]``
    table; see ``docs/hybrid.toml``)."""
    path = Path(path)
    try:
        text = path.read_text()
        payload = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        name, config = payload["model"], payload.get("config", {})
    except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"cannot read model config: {exc}", file=str(path)) from None
    except (KeyError, TypeError):
        raise DataError('expected {"model": NAME, "config": {...}}', file=str(path)) from None
    if not isinstance(config, dict):
        raise DataError("config must be an object", file=str(path), column="config")
    return name, config

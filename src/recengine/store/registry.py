"""Versioned model registry: every training run becomes an immutable version on disk.

Why a registry and not a folder of saved models: serving must always find a complete model, a bad
retrain must be undone in one step, and every model served must say what it was trained on and
how well it did. So:

- **Versions are immutable and atomic.** A version (``root/versions/v0007/``) holds one sub-folder
  per model (written by :meth:`Recommender.save`, no pickle), the training data its models share
  once (``data/``: the training users' histories, which models do not save), and a
  ``manifest.json``: version,
  UTC creation time, each model's name and config, the training-data snapshot the caller gives,
  the evaluation metrics and free notes. It is written in ``root/.staging/``, fsynced, then moved
  into place with one ``os.rename``: a crash leaves at most an unlisted staging folder, never a
  half version.
- **The served version is one pointer.** ``root/CURRENT`` names it and is replaced by
  write-to-temp + ``os.replace`` (atomic on POSIX), so a reader sees the old or the new name, never
  a torn one. ``root/history.jsonl`` then logs the activation or rollback; :meth:`rollback`
  replays it as an undo stack, so repeated rollbacks walk back v3 → v2 → v1 instead of
  ping-ponging. The pointer is the truth: a log entry lost in a crash is reconciled from it.
- **Writers take ``root/.lock``** (``fcntl.flock``, released by the kernel if the process dies), so
  concurrent publishers, threads or processes, get distinct version numbers. Ids are ``v`` + a
  zero-padded counter, kept in ``root/.last_version`` so a deleted version's id is never reused.
  Readers take no lock: everything they read is replaced atomically.

POSIX only (``fcntl``, directory fsync, atomic ``rename``), like the servers it runs on.

Examples
--------
>>> import tempfile
>>> import pandas as pd
>>> from recengine.data.training_data import TrainingData
>>> from recengine.models import Popularity
>>> pairs = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "a"],
...                       "rating": float("nan"), "feedback": 1.0})
>>> registry = ModelRegistry(tempfile.mkdtemp())
>>> model = Popularity().fit(TrainingData.from_interactions(pairs))
>>> version = registry.publish({"popularity": model}, data={"count": 2}, metrics={})
>>> registry.activate(version)
>>> version, registry.current(), type(registry.load()).__name__
('v0001', 'v0001', 'Popularity')
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from recengine.data.training_data import TrainingData
from recengine.errors import ModelLoadError, ModelNotFoundError, RecengineError, RegistryError
from recengine.models.base import Recommender

__all__ = ["ModelRegistry", "RegistryError"]

FORMAT_VERSION = 1
#: The folder of a version's training data (histories for every model of the version).
DATA_FOLDER = "data"
_VERSION = re.compile(r"v(\d+)")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Module-level aliases: inside the class, ``list`` is the method of that name.
_Manifests = list[dict[str, Any]]
_Ids = list[str]


def _version_id(number: int) -> str:
    return f"v{number:04d}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush every file and folder under ``path`` to disk, so a rename publishes whole files."""
    for folder, _, files in os.walk(path):
        for name in files:
            with (Path(folder) / name).open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: write a temp file beside it, fsync, ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # noqa: PTH105 (the atomic step)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)  # noqa: PTH108
        raise
    _fsync_dir(path.parent)


def _clean_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metrics as strict JSON: floats, with NaN and infinities as ``null``."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in metrics.items():
        out[str(name)] = {}
        for key, value in values.items():
            number = float(value) if value is not None else math.nan
            out[str(name)][str(key)] = number if math.isfinite(number) else None
    return out


def _json_default(value: Any) -> Any:
    """NumPy scalars, paths and timestamps in the caller's snapshot become plain JSON."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a model's folder in a version (None: it can).

    Only plain names: ``../x``, ``/etc`` or ``a/b`` would lead a load outside its version, and
    ``data`` is the training data's folder.

    >>> _name_problem("wals"), _name_problem("../../../x")
    (None, "'../../../x' is not a plain folder name: use letters, digits, '_', '-' and '.', \
not starting with '.' or '-'")
    """
    if name == DATA_FOLDER:
        return f"{name!r} is reserved for the training data"
    if not (isinstance(name, str) and _MODEL_NAME.fullmatch(name)):
        return (f"{name!r} is not a plain folder name: use letters, digits, '_', '-' and '.', "
                "not starting with '.' or '-'")
    return None


def _reconcile(stack: _Ids, current: str | None) -> _Ids:
    """Trust the pointer when the log missed its last entry (a crash between the two writes).

    The pointer is written first, so the log can only lag: a lost activation is appended, a
    lost rollback cuts the stack back to the version it reached.
    """
    if current is None or (stack and stack[-1] == current):
        return stack
    if current in stack:
        return stack[:len(stack) - stack[::-1].index(current)]
    return [*stack, current]


class ModelRegistry:
    """Immutable model versions under ``root``, one of them active (see the module docstring).

    Nothing is created on disk until the first write, so reading an empty or missing registry
    is harmless: :meth:`current` is None and :meth:`list` is empty.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- layout -------------------------------------------------------------------------------
    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    @property
    def _staging(self) -> Path:
        return self.root / ".staging"

    @property
    def _pointer(self) -> Path:
        return self.root / "CURRENT"

    @property
    def _history(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def _counter(self) -> Path:
        return self.root / ".last_version"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive access for writers; the kernel drops the lock if the process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading ------------------------------------------------------------------------------
    def versions(self) -> _Ids:
        """Every visible version id, oldest first."""
        if not self._versions.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in self._versions.iterdir()
                 if (m := _VERSION.fullmatch(p.name)) and p.is_dir()]
        return [name for _, name in sorted(found)]

    def path(self, version: str) -> Path:
        """The folder of ``version``; :class:`ModelNotFoundError` if there is none."""
        folder = self._versions / version
        if not _VERSION.fullmatch(version) or not (folder / "manifest.json").is_file():
            raise self._unknown(version)
        return folder

    def _unknown(self, version: str) -> ModelNotFoundError:
        known = self.versions()
        listed = f"known versions: {', '.join(known)}" if known else "it has no versions yet"
        return ModelNotFoundError(f"unknown version {version!r} in the registry at {self.root}; "
                                  f"{listed}")

    def current(self) -> str | None:
        """The active version, or None before the first activation."""
        try:
            text = self._pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def show(self, version: str) -> dict[str, Any]:
        """The manifest of ``version``, with an ``active`` flag."""
        return self._manifest(version) | {"active": version == self.current()}

    def list(self) -> _Manifests:
        """Every version's manifest, newest first, each with an ``active`` flag."""
        active = self.current()
        return [self._manifest(version) | {"active": version == active}
                for version in reversed(self.versions())]

    def _manifest(self, version: str) -> dict[str, Any]:
        """``version``'s manifest; :class:`ModelLoadError` when it is damaged or lists no
        model (written by hand, or cut short by a disk fault)."""
        folder = self.path(version)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"manifest.json cannot be read ({exc})", path=folder) from None
        if not (isinstance(manifest, dict) and isinstance(manifest.get("models"), dict)
                and manifest["models"]):
            raise ModelLoadError("manifest.json lists no models", path=folder)
        return manifest

    def training_data(self, version: str) -> TrainingData | None:
        """The training data ``version``'s models were fitted on, when it was published;
        :class:`ModelLoadError` when its files are damaged (the version cannot be served)."""
        folder = self.path(version) / DATA_FOLDER
        if not folder.is_dir():
            return None
        try:
            return TrainingData.load(folder)
        except (RecengineError, OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise ModelLoadError(f"version {version}'s training data: {exc}", path=folder) from None

    def load(self, version: str | None = None, name: str | None = None, *,
             histories: TrainingData | None = None) -> Recommender:
        """A model of ``version`` (default: the active one), ``name`` or else its first model.

        Training users' histories come from ``histories`` (pass :meth:`training_data` once
        when loading several models of a version), else from the version's own data; a model
        whose vocabularies differ from that data's gets none.
        """
        if version is None:
            version = self.current()
            if version is None:
                raise ModelNotFoundError(f"the registry at {self.root} has no active version: "
                                         "publish one and activate it first")
        names = list(self.show(version)["models"])
        if name is None:
            name = names[0]
        elif name not in names:
            raise ModelNotFoundError(f"version {version} has no model {name!r}; it has "
                                     f"{', '.join(names)}")
        problem = _name_problem(name)
        if problem is not None:  # a manifest written by hand, or tampered with
            raise ModelLoadError(f"its manifest names a model {problem}: registry paths never "
                                 "leave their version", path=self.path(version))
        path = self.path(version) / name
        data = histories if histories is not None else self.training_data(version)
        try:
            model = Recommender.load(path)
        except ModelNotFoundError as exc:  # the manifest lists it: the version is damaged
            raise ModelLoadError(f"version {version} lists model {name!r}, but {exc}",
                                 path=path) from None
        if data is not None and data.users == model.users_ and data.items == model.items_:
            model.histories_ = data
        return model

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, models: Mapping[str, Recommender], *, data: Mapping[str, Any],
                metrics: Mapping[str, Mapping[str, Any]], notes: str = "",
                training: TrainingData | None = None) -> str:
        """Save fitted ``models`` as a new version and return its id; does not activate it.

        ``data`` describes the training data (counts, time range, a hash); ``metrics`` maps each
        model name to its evaluation metrics. ``training`` (the data the models were fitted on;
        default: the first model's, when it was fitted in this process) is saved once, for every
        model: it holds the training users' histories that seen-item exclusion and
        history-based scoring read when the version is served.
        """
        if training is None:
            training = next((m.histories_ for m in models.values()
                             if isinstance(m.histories_, TrainingData)), None)
        self._check_names(models)
        self._staging.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self._staging, prefix="publish-"))
        try:
            for name, model in models.items():
                model.save(staging / name)
            if training is not None:
                training.save(staging / DATA_FOLDER)
            _fsync_tree(staging)
            manifest = {"models": {name: {"model": model.key(),
                                          "config": model.config.model_dump(mode="json")}
                                   for name, model in models.items()},
                        "data": dict(data), "metrics": _clean_metrics(metrics), "notes": notes}
            return self._commit(staging, manifest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _check_names(models: Mapping[str, Recommender]) -> None:
        if not models:
            raise RegistryError("nothing to publish: pass at least one fitted model")
        for name in models:
            problem = _name_problem(name)
            if problem is not None:
                raise RegistryError(f"model name {problem}")

    def _commit(self, staging: Path, manifest: dict[str, Any]) -> str:
        """Number the staged version, write its manifest, and rename it into place (locked)."""
        with self._locked():
            version = _version_id(self._next_number())
            body = {"version": version, "format": FORMAT_VERSION, "created_at": _now(),
                    **manifest}
            path = staging / "manifest.json"
            path.write_text(json.dumps(body, indent=2, default=_json_default))
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
            _fsync_dir(staging)
            _atomic_write(self._counter, f"{int(version[1:])}\n")
            self._versions.mkdir(exist_ok=True)
            os.rename(staging, self._versions / version)  # noqa: PTH104 (the atomic step)
            _fsync_dir(self._versions)
        return version

    def _next_number(self) -> int:
        try:
            last = int(self._counter.read_text().strip())
        except (FileNotFoundError, ValueError):
            last = 0
        existing = [int(v[1:]) for v in self.versions()]
        return max([last, *existing]) + 1

    # -- activation ---------------------------------------------------------------------------
    def activate(self, version: str) -> None:
        """Make ``version`` the one :meth:`load` and the server use (atomic pointer swap)."""
        with self._locked():
            self.path(version)
            previous = self.current()
            if previous == version:
                return
            _atomic_write(self._pointer, version + "\n")
            self._log({"action": "activate", "version": version, "previous": previous})

    def rollback(self) -> str:
        """Re-activate the version active before the current one and return its id.

        Versions deleted since are skipped. :class:`RegistryError` when there is none.
        """
        with self._locked():
            current = self.current()
            stack = self._stack(current)
            if stack and stack[-1] == current:
                stack.pop()
            existing = set(self.versions())
            while stack and (stack[-1] == current or stack[-1] not in existing):
                stack.pop()
            if not stack:
                raise RegistryError(f"nothing to roll back to: no version was active before "
                                    f"{current or 'now'} (or they were deleted)")
            target = stack[-1]
            _atomic_write(self._pointer, target + "\n")
            self._log({"action": "rollback", "version": target, "previous": current})
            return target

    def _stack(self, current: str | None) -> _Ids:
        """Replay the history as an undo stack of activations; its top is the active version."""
        stack: _Ids = []
        for entry in self._read_history():
            if entry.get("action") == "rollback":
                target = cast(str, entry.get("version"))  # _log writes one on every entry
                if stack:
                    stack.pop()
                while stack and stack[-1] != target:
                    stack.pop()
                if not stack:
                    stack.append(target)
            else:
                stack.append(cast(str, entry.get("version")))
        return _reconcile(stack, current)

    def _read_history(self) -> Iterator[dict[str, Any]]:
        try:
            lines = self._history.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            with suppress(json.JSONDecodeError):  # a torn last line after a crash
                yield json.loads(line)

    def _log(self, entry: dict[str, Any]) -> None:
        with self._history.open("a") as handle:
            handle.write(json.dumps({"at": _now(), **entry}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    # -- removal ------------------------------------------------------------------------------
    def delete(self, version: str) -> None:
        """Remove ``version`` for good; the active one is refused (activate another first)."""
        with self._locked():
            folder = self.path(version)
            if version == self.current():
                raise RegistryError(f"{version} is the active version: activate or roll back to "
                                    "another one before deleting it")
            self._staging.mkdir(exist_ok=True)
            doomed = Path(tempfile.mkdtemp(dir=self._staging, prefix=f"delete-{version}-"))
            os.rename(folder, doomed / version)  # noqa: PTH104 (disappears at once)
            _fsync_dir(self._versions)
        shutil.rmtree(doomed, ignore_errors=True)

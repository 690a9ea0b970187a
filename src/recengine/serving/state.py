"""What the server holds between requests: the active model, its fallbacks, live histories.

The active model is one immutable :class:`Active` snapshot. :meth:`ServingState.swap` builds the
new snapshot first (loading from the registry, fitting the popularity fallback) and only then
replaces the reference under a lock, so a request that already took the old snapshot finishes on
it, and no request ever sees a half-loaded model.

Events are read back from the store, per user, in order, and kept as *live histories*
(:mod:`recengine.serving.live`, bounded): that user's next recommendation asks each model with
a :class:`~recengine.data.query.Query` whose history holds them after the training history (the
version's saved training data), folded in without retraining. The query also carries the user's
features as stored now (a new user PUT a moment ago is placed in a segment) and the request time.

The store is the one source of truth, so that several server processes answer alike. A process
that writes rings the deployment's :class:`~recengine.serving.bell.Bell` once its transaction
committed; before answering, every process checks the bell and, when it rang, reads what is new:
events after the last id it has (:meth:`ServingState.catch_up`), and the catalogues' change log
(users written or deleted, items written or deleted). A background poll
(:meth:`ServingState.poll`) does the same every few seconds for writers the bell cannot reach
(other hosts, commands), and swaps in a version activated elsewhere.

Answers come from a fallback chain: the version's primary model, then its
``segment-popularity`` model if it has one (popular among users like this one), then popularity.

With no version active (a new deployment, before its first training), recommendations still
come from what the store has: popularity over every stored event, each user's own items left
out, or an empty list when the store holds none, each answer saying why
(:meth:`ServingState.serving`). It is rebuilt when events arrive. The other answers that need a
trained model (similar items, audiences) say that none is loaded (503) until one is.

Deleted items (:meth:`~recengine.store.events.EventStore.deleted_items`) are never served, whatever
the model learned: each loaded version holds them as indices of its own vocabulary
(:attr:`Active.hidden`), read from the store when it starts being served and again after every
catalogue write, and every answer steps over them. The item features that rules and constraints
read are typed by the kinds the store recorded, and guessed from the values only where it has
none.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recengine.data.query import NO_TIME, Event, Query
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.data.vocabulary import Vocabulary
from recengine.errors import (
    DataError,
    ModelLoadError,
    ModelNotFoundError,
    NotSupportedError,
    RecengineError,
)
from recengine.models.base import Capability, Recommender
from recengine.models.constraints import parse_constraint
from recengine.models.fallback import FallbackChain, RankedItem
from recengine.models.popularity import Popularity
from recengine.models.rules import Exclude, Require, Rule, RuleEngine
from recengine.serving.bell import Bell, Ring
from recengine.serving.cache import AnswerCache
from recengine.serving.live import LiveHistories
from recengine.serving.memory import trim_heap
from recengine.store.events import EventStore, StoredEvent
from recengine.store.registry import ModelRegistry

__all__ = ["Active", "NoActiveModelError", "Poller", "Recipe", "ServingState"]

log = logging.getLogger(__name__)

#: Events read from the store per query when catching up.
_READ_ROWS = 10_000

class NoActiveModelError(ModelNotFoundError):
    """The server has no model loaded yet (maps to 503, not 404)."""


@dataclass
class Active:
    """One loaded registry version: never mutated after construction, except its caches and
    the set of its items hidden because they were deleted.

    With no version active, recommendations come from an ``Active`` whose ``version`` is None
    and whose ``reason`` says so: popularity over the stored events.
    """

    version: str | None
    name: str
    model: Recommender
    popularity: Recommender
    names: list[str]
    #: The version's training data (histories of its training users), when it saved one.
    training: TrainingData | None = None
    #: The version's segment-popularity model, asked between the primary and popularity.
    segment: Recommender | None = None
    #: The last event id the version was trained on, when its manifest records one.
    trained_through: int | None = None
    others: dict[str, Recommender] = field(default_factory=dict)
    features: tuple[pd.DataFrame, dict[str, FeatureKind]] | None = None
    #: The server's global rules bound to each model's catalogue (built once per features).
    engines: dict[str, RuleEngine] = field(default_factory=dict)
    #: Indices of deleted items in this version's vocabulary: never served. Replaced whole (under
    #: the state's lock), so a request reads one consistent set.
    hidden: frozenset[int] = frozenset()
    #: Why these answers, when they come from no registry version.
    reason: str | None = None

    @property
    def hidden_ids(self) -> set[str]:
        """The ids of :attr:`hidden`."""
        return set(self.model.items_.ids[sorted(self.hidden)].tolist())


def _popularity_from_store(model: Recommender, store: EventStore) -> Recommender:
    """Popularity over the model's own item catalogue (a fallback chain needs one catalogue)."""
    events = store.events()
    if len(events):
        events = events[model.items_.index(events["item_id"].astype(str),
                                           missing="negative") >= 0]
    if len(events) == 0:
        if isinstance(model.histories_, TrainingData):
            return Popularity().fit(model.histories_)
        raise DataError("the event store is empty and the model has no training data: "
                        "popularity has nothing to count")
    return _popularity(events, model.items_)


def _popularity(events: pd.DataFrame, items: Vocabulary) -> Popularity:
    """Popularity over ``events`` (all of whose items ``items`` holds), each user's items as
    their history; with no events, a popularity of nothing that answers empty lists."""
    codes, uniques = pd.factorize(events["user_id"].astype(str))
    users = Vocabulary(uniques, name="user_id")
    if len(events) == 0:
        return Popularity().set_state(users, items, {"item_counts_": np.zeros(len(items),
                                                                               np.float32)}, {})
    idx = items.index(events["item_id"].astype(str))
    feedback = csr_from_pairs(codes.astype(np.int64), idx.astype(np.int64),
                              np.ones(len(codes)), (len(uniques), len(items)))
    feedback.sum_duplicates()
    feedback.data[:] = 1.0
    empty = csr_from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                           feedback.shape)
    data = TrainingData(users=users, items=items, feedback=feedback, ratings=empty)
    return Popularity().fit(data)


def _warm_up(model: Recommender) -> None:
    """Answer each kind of request once, off the request path.

    A compiled kernel loads from numba's on-disk cache on its first call in a process (for
    WALS: about 240 ms for fold-in, 65 ms for reasons; benchmarks/bench_request_parts.py).
    Without this, the first request needing each one stalled every request behind it.
    """
    users, items = model.users_.ids[:1].tolist(), model.items_.ids[:2].tolist()
    if not (users and items):
        return
    calls = [lambda: model.recommend(users, 10), lambda: model.recommend_history(items, 10),
             lambda: model.similar_items(items[0], 10), lambda: model.explain(users[0], items)]
    for call in calls:
        with contextlib.suppress(RecengineError):  # a kind of request this model refuses
            call()


def _infer_kind(column: pd.Series) -> FeatureKind | None:
    """A guess for a feature whose kind the store has not recorded (dates look categorical)."""
    values = column.dropna()
    if values.empty:
        return None
    first = values.iloc[0]
    if isinstance(first, list | tuple | np.ndarray):
        return FeatureKind.MULTI
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values):
        return FeatureKind.NUMERIC
    if all(isinstance(v, str) for v in values):
        return FeatureKind.CATEGORICAL
    return None


def _event(row: StoredEvent) -> Event:
    """A stored event as a live history's event (each weighs 1)."""
    return Event(row.item_id, row.event_type or "",
                 float("nan") if row.value is None else float(row.value),
                 NO_TIME if row.timestamp is None
                 else int(row.timestamp.replace(tzinfo=UTC).timestamp()))


def _now() -> datetime:
    """The request time, as queries carry it (UTC, naive)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _context(device: str | None) -> dict[str, str]:
    """A request's context as queries carry it: the device, when the request names one."""
    return {} if device is None else {"device": device}


def _by_user(rows: Sequence[StoredEvent]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for row in rows:
        grouped.setdefault(row.user_id, []).append(_event(row))
    return grouped


@dataclass(frozen=True)
class Recipe:
    """What a :class:`ServingState` is built from, as plain values another process can take:
    the same store, registry, bell and options give a state that answers alike
    (:meth:`ServingState.recipe`, :meth:`build`)."""

    registry: str
    database_url: str
    bell: str
    approximate_min_items: int | None
    ef_search: int
    cache_users: int
    rules: tuple[Rule, ...]
    live_per_user: int
    live_max_events: int
    trim_after_swap: bool

    def build(self) -> ServingState:
        """A state over the recipe's store and registry, nothing loaded yet."""
        return ServingState(ModelRegistry(self.registry), EventStore(self.database_url),
                            approximate_min_items=self.approximate_min_items,
                            ef_search=self.ef_search, cache_users=self.cache_users,
                            rules=self.rules, live_per_user=self.live_per_user,
                            live_max_events=self.live_max_events, bell=Bell(self.bell),
                            trim_after_swap=self.trim_after_swap)


class ServingState:
    """The serving state shared by every request (thread-safe).

    Models of at least ``approximate_min_items`` items answer plain top-k from an HNSW index
    (:mod:`recengine.models.retrieval`) searched with ``ef_search``; None answers exactly.
    Plain answers (no rules, no constraint, no reasons) of the last ``cache_users`` users are
    kept until their history or the model changes (one per device asking, for a model that
    reads it: :attr:`Capability.CONTEXT`). ``rules`` (business rules) apply to every
    answer, before those of the request. Live histories keep ``live_per_user`` events per user
    and ``live_max_events`` in all (:class:`~recengine.serving.live.LiveHistories`). ``bell``
    is shared with the deployment's other processes; by default the one in the registry's
    folder.
    """

    def __init__(self, registry: ModelRegistry, store: EventStore, *,
                 approximate_min_items: int | None = None, ef_search: int = 64,
                 cache_users: int = 0, rules: Sequence[Rule] = (),
                 live_per_user: int = 200, live_max_events: int = 1_000_000,
                 bell: Bell | None = None, trim_after_swap: bool = True) -> None:
        self.registry = registry
        #: Return freed heap pages to the system after each swap (:mod:`.memory`).
        self.trim_after_swap = trim_after_swap
        self.store = store
        self.rules = list(rules)
        self.approximate_min_items = approximate_min_items
        self.ef_search = ef_search
        self.answers: AnswerCache[list[RankedItem]] = AnswerCache(cache_users)
        self._lock = threading.Lock()
        self._active: Active | None = None
        self._previous: Active | None = None
        #: Popularity over the stored events, while no version is active (:meth:`serving`).
        self._from_store: Active | None = None
        self._store_lock = threading.Lock()
        self._live = LiveHistories(live_per_user, live_max_events)
        #: The last event id in the live histories (None before a version is served).
        self._seen_id: int | None = None
        #: Live histories hold the events after this id: the served version's last training
        #: event, or, for a version that does not record it, the last one when serving began.
        self._live_after = 0
        #: Stored users' features (user → feature → value): read from the store when the first
        #: version loads, then kept up to date from the change log (:meth:`catch_up`).
        self._users: dict[str, dict[str, Any]] | None = None
        #: The last entry of the store's change log applied.
        self._seen_change = 0
        self.bell = bell if bell is not None else Bell(registry.root / ".bell")
        #: The bell's counters when this process last caught up.
        self._heard = self.bell.read()
        #: One catch-up at a time: a request that heard the bell waits for the one reading.
        self._catching_up = threading.RLock()

    def recipe(self) -> Recipe:
        """How to build a state that answers as this one does, in another process."""
        return Recipe(str(self.registry.root), self.store.url, str(self.bell.path),
                      self.approximate_min_items, self.ef_search, self.answers.max_users,
                      tuple(self.rules), self._live.per_user, self._live.max_events,
                      self.trim_after_swap)

    # -- the model ------------------------------------------------------------------------
    @property
    def active(self) -> Active:
        """The version served, once what the bell announced is read (see :meth:`catch_up`)."""
        if self.heard():
            self.catch_up()
        current = self._active  # one reference read: atomic
        if current is None:
            raise NoActiveModelError("no model is loaded: publish and activate a registry "
                                     "version, then POST /v1/models/{version}/activate")
        return current

    @property
    def version(self) -> str | None:
        current = self._active
        return None if current is None else current.version

    def serves(self) -> tuple[str | None, int]:
        """What this state answers from: the version, and the id after which stored events are
        in live histories (for :meth:`follow`)."""
        return self.version, self._live_after

    def follow(self, serves: tuple[str | None, int]) -> None:
        """Answer as the state whose :meth:`serves` gave ``serves`` (in another process, over
        the same store and registry): its version, and live histories from the same event.

        Two processes that loaded a version not recording its last training event at different
        moments would otherwise each count as new only the events stored after their own load.
        """
        version, live_after = serves
        if version is not None and serves != self.serves():
            self.swap(version, live_after=live_after)

    def serving(self) -> Active:
        """What recommendations are answered from: the active version, or while there is
        none, popularity over every stored event (rebuilt when events were stored since).

        So a new deployment answers from its first event on, instead of refusing until a
        version is trained and activated; ``reason`` says which of the two it is.
        """
        current = self._active
        if current is not None:
            return current
        with self._store_lock:  # one rebuild at a time; the others then find it done
            last_id = self.store.last_id()
            built = self._from_store
            if built is not None and built.trained_through == last_id:
                return built
            built = self._store_answers(last_id)
            self._hide(built, self.store.deleted_items())
            with self._lock:
                if self._active is not None:  # a version arrived meanwhile: it wins
                    return self._active
                self._from_store = built
                self.answers.clear()
            return built

    def _store_answers(self, last_id: int) -> Active:
        """Popularity over the events stored up to ``last_id``, as an answer source."""
        events = self.store.events(until_id=last_id)
        model = _popularity(events, Vocabulary(events["item_id"].astype(str), name="item_id"))
        reason = (f"no model version is active yet: the most popular items of the "
                  f"{len(events)} events stored" if len(events) else
                  "no model version is active yet and the store holds no events: nothing to "
                  "recommend until some arrive")
        return Active(version=None, name=model.name, model=model, popularity=model,
                      names=[model.name], trained_through=last_id, reason=reason)

    def load_current(self) -> str | None:
        """Load the registry's active version if there is one; its id or None.

        A version that cannot be loaded is a :class:`ModelLoadError` saying how to recover:
        a server must not start serving something else than the version its registry names.
        """
        version = self.registry.current()
        if version is not None:
            try:
                self.swap(version)
            except ModelLoadError as exc:
                raise ModelLoadError(
                    f"{exc.message} (the active version {version}, named by "
                    f"{self.registry.root / 'CURRENT'}: roll back, or activate another with "
                    "recengine models rollback / activate)", path=exc.path) from None
        return version

    def build(self, version: str) -> Active:
        """Load ``version`` and its fallback without touching what is served."""
        manifest = self.registry.show(version)
        names = list(manifest["models"])
        primary = names[0]
        training = self.registry.training_data(version)
        model = self._load(version, primary, training)
        popularity: Recommender | None = None
        segment: Recommender | None = None
        for name, entry in manifest["models"].items():
            if name == primary or entry["model"] not in ("popularity", "segment-popularity"):
                continue
            candidate = self.registry.load(version, name, histories=training)
            if candidate.items_ != model.items_:
                continue
            if entry["model"] == "popularity" and popularity is None:
                popularity = candidate
            elif entry["model"] == "segment-popularity" and segment is None:
                segment = candidate
        if popularity is None:
            popularity = (model if model.name == "popularity"
                          else _popularity_from_store(model, self.store))
        last_id = manifest.get("data", {}).get("last_id")
        active = Active(version=version, name=primary, model=model, popularity=popularity,
                        names=names, trained_through=None if last_id is None else int(last_id),
                        training=training, segment=segment)
        if self.rules:
            self._global_engine(active, model)  # a bad global rule fails the load, not requests
        return active

    def swap(self, version: str, *, activate: bool = False,
             live_after: int | None = None) -> Active:
        """Serve ``version`` from now on; requests already running finish on the old model.

        The version served before stays loaded, so that rolling back to it is instant (loading
        and indexing 100,000 items takes seconds). Live histories hold the stored events after
        the version's last training event; for a version that does not record it, after
        ``live_after`` when given (see :meth:`follow`), else those of the version served before
        are kept (from when the first version loaded).
        """
        current = self._active
        new = current if current is not None and current.version == version else (
            self._previous if self._previous is not None and self._previous.version == version
            else self.build(version))
        if self._users is None:
            self._seen_change = self.store.last_change()  # before reading: none is missed
            self._users = self._read_users()
        after = new.trained_through if new.trained_through is not None else live_after
        live, seen_id = self._replay(after)
        with self._lock:
            self._hide(new, self.store.deleted_items())  # under the lock: see catalogue_changed
            if activate:
                self.registry.activate(version)
            if current is not new:
                self._previous = current
            if live is not None:
                self._live, self._seen_id = live, seen_id
                self._live_after = after or 0
            elif self._seen_id is None:  # trained from a file: only events from now on are new
                self._seen_id = self._live_after = self.store.last_id()
            self._active = new
            self._from_store = None
            self.answers.clear()
        if activate:
            self.bell.ring(Ring.MODELS)
        self._catch_up_events()  # what was stored while the version loaded
        if self.trim_after_swap:
            trim_heap()  # the version released above (the one before the previous)
        return new

    def _replay(self, after: int | None) -> tuple[LiveHistories | None, int]:
        """Live histories of the stored events after id ``after`` (a version's last training
        event), and the last id read.

        So a restarted server (or several) folds in what arrived after training, and a newly
        trained version does not count twice what it has already learned. None (keep the live
        histories as they are) for None: the manifest does not say which events the version saw.
        """
        if after is None:
            return None, 0
        live = LiveHistories(self._live.per_user, self._live.max_events)
        seen_id = after
        for rows in self._stored_after(seen_id):
            for user, events in _by_user(rows).items():
                live.add(user, events)
            seen_id = rows[-1].id
        return live, seen_id

    def _stored_after(self, last_id: int) -> Iterator[list[StoredEvent]]:
        """The events stored after ``last_id``, in id order, a chunk at a time."""
        while True:
            rows = self.store.event_rows(last_id, limit=_READ_ROWS)
            if rows:
                yield rows
            if len(rows) < _READ_ROWS:
                return
            last_id = rows[-1].id

    def rollback(self) -> Active:
        """Serve the version active before this one; if it cannot be loaded, the registry
        points back at the version still served, and the error is raised."""
        served = self.version
        with self._lock:
            target = self.registry.rollback()
        try:
            active = self.swap(target)
        except ModelLoadError:
            if served is not None:
                self.registry.activate(served)
            raise
        self.bell.ring(Ring.MODELS)
        return active

    def named(self, active: Active, name: str | None) -> Recommender:
        if name is None or name == active.name:
            return active.model
        if active.version is None:
            raise ModelNotFoundError(f"no model version is active, so there is no model "
                                     f"{name!r} yet; ask without one for popularity")
        if name not in active.names:
            raise ModelNotFoundError(f"version {active.version} has no model {name!r}; it has "
                                     f"{', '.join(active.names)}")
        if name not in active.others:
            active.others[name] = self._load(active.version, name, active.training)
        return active.others[name]

    def _load(self, version: str, name: str, training: TrainingData | None) -> Recommender:
        """A registry model, answering top-k and similar items from its HNSW graphs when its
        catalogue is large enough: those saved with it (training builds them), else built here."""
        model = self.registry.load(version, name, histories=training)
        limit = self.approximate_min_items
        if limit is None or len(model.items_) < limit:
            model.drop_indexes()  # exact answers
        elif model.indexes:
            for index in model.indexes:
                index.ef_search = self.ef_search
        else:
            with contextlib.suppress(NotSupportedError):  # no vector form: exact top-k
                model.build_index(ef_search=self.ef_search)
        _warm_up(model)
        return model

    def item_features(self, active: Active) -> tuple[pd.DataFrame, dict[str, FeatureKind]]:
        """The store's item features aligned with the model's items, and their kinds.

        Kinds the store recorded come first, their columns typed by them; the others are
        guessed from the values (:func:`_infer_kind`).
        """
        cached = active.features
        if cached is None:
            stored, recorded = self.store.typed_items()
            frame = stored.reindex(active.model.items_.ids.astype(str))
            kinds = {str(c): k for c in frame.columns
                     if (k := recorded.get(str(c)) or _infer_kind(frame[c])) is not None}
            cached = (frame.reset_index(drop=True), kinds)
            active.features = cached
        return cached

    def catalogue_changed(self) -> None:
        """After an item was written or deleted: re-read the deleted items, drop stale caches.

        Both loaded versions are updated: the one kept for rollback must not come back with
        stale features. Kept answers are dropped when the deleted items changed, or when the
        server's rules may read the features that did. The store is read under the lock, as
        :meth:`swap` does: two deletes applied out of order would otherwise leave one visible.
        """
        with self._lock:
            deleted = self.store.deleted_items()
            changed = False
            for active in (self._active, self._previous, self._from_store):
                if active is not None:
                    active.features = None
                    active.engines.clear()
                    changed |= self._hide(active, deleted)
            if changed or self.rules:
                self.answers.clear()

    @staticmethod
    def _hide(active: Active, deleted: set[str]) -> bool:
        """Hide the ``deleted`` items ``active`` knows; whether its hidden set changed."""
        idx = active.model.items_.index(sorted(deleted), missing="negative")
        hidden = frozenset(idx[idx >= 0].tolist())
        if hidden == active.hidden:
            return False
        active.hidden = hidden
        active.engines.clear()  # they exclude the hidden items
        return True

    def _global_engine(self, active: Active, model: Recommender) -> RuleEngine:
        engine = active.engines.get(model.name)
        if engine is None:
            engine = self._engine(active, model, self.rules, blame="RECENGINE_RULES_FILE")
            active.engines[model.name] = engine
        return engine

    def _engine(self, active: Active, model: Recommender, rules: Sequence[Rule], *,
                blame: str) -> RuleEngine:
        """``rules`` bound to the catalogue, hidden items excluded: so that they take no place
        in a diversity cap or a pinned slot before the fallback chain would drop them."""
        features, kinds = self.item_features(active)
        if active.hidden:
            rules = [*rules, Exclude(items=sorted(active.hidden_ids))]
        try:
            return RuleEngine(rules, model.items_, features, kinds)
        except DataError as exc:
            raise DataError(exc.message, column=blame) from None

    # -- keeping up with the store ------------------------------------------------------------
    def changed(self, what: Ring) -> None:
        """After this process committed a write: every process (this one too) reads it from
        the store before its next answer."""
        self.bell.ring(what)

    def heard(self) -> bool:
        """Whether the bell rang for events or catalogues since this process last caught up:
        then the next answer must :meth:`catch_up` first (a query, off the event loop)."""
        heard = self.bell.read()
        return heard[:2] != self._heard[:2]

    def catch_up(self) -> None:
        """Read the events and catalogue writes stored since this process last did."""
        with self._catching_up:
            heard = self.bell.read()
            if heard[:2] != self._heard[:2]:
                self._read_changes((*heard[:2], self._heard[2]))

    def poll(self) -> None:
        """Everything :meth:`catch_up` reads, heard or not, and the registry's active version:
        for writers the bell does not reach (other hosts, commands). Loading a version takes
        seconds, so it runs here, in the background, never on a request."""
        with self._catching_up:
            self._read_changes(self.bell.read())
        current = self.registry.current()
        if current is not None and current != self.version:
            self.swap(current)

    def _read_changes(self, heard: tuple[int, int, int]) -> None:
        """Read what the store holds now, then record the bell as ``heard`` (read before).

        Recorded after the reads, not before: until then :meth:`heard` stays true, so a request
        arriving meanwhile waits for this catch-up instead of answering from what it replaces.
        A ring after ``heard`` was read still differs from it: heard by the next request.
        """
        self._catch_up_events()
        self._catch_up_changes()
        self._heard = heard

    def _catch_up_events(self) -> None:
        """Fold the events stored after the last one seen into live histories.

        Each chunk is applied under the lock, skipping what a swap's replay already holds, so
        an event counts once even when a swap runs meanwhile.
        """
        if self._seen_id is None:
            return
        for rows in self._stored_after(self._seen_id):
            with self._lock:
                fresh = [r for r in rows if self._seen_id is None or r.id > self._seen_id]
                for user, events in _by_user(fresh).items():
                    self._live.add(user, events)
                    self.answers.forget(user)
                if fresh:
                    self._seen_id = fresh[-1].id
            if not fresh:  # a swap's replay holds the rest
                return

    def _catch_up_changes(self) -> None:
        """Apply the catalogue writes logged after the last one applied."""
        changes = self.store.changes(self._seen_change)
        if not changes:
            return
        users = {c.id for c in changes if c.catalogue == "users"}
        if None in users:
            with self._lock:
                self._users = self._read_users()
        for user in users - {None}:
            self._refresh_user(str(user))
        if any(c.catalogue == "items" for c in changes):
            self.catalogue_changed()
        self._seen_change = changes[-1].seq

    def _refresh_user(self, user: str) -> None:
        """Re-read ``user``'s features and live history (a write or a delete changed them)."""
        features = self.store.user(user)
        rows = self._stored_history(user)
        with self._lock:
            users = self._users if self._users is not None else {}
            if features is None:
                users.pop(user, None)
            else:
                users[user] = features
            self._users = users
            self._install_history(user, rows)
            self._from_store = None  # popularity over the store, counted again without them
            self.answers.forget(user)

    def _reread_evicted(self, user: str) -> None:
        """Read an evicted user's live history back from the store."""
        rows = self._stored_history(user)
        with self._lock:
            if user in self._live.evicted:
                self._install_history(user, rows)

    def _stored_history(self, user: str) -> list[StoredEvent]:
        """``user``'s last events after the live histories' start, as the store has them."""
        return self.store.event_rows(self._live_after, user_id=user, limit=self._live.per_user)

    def _install_history(self, user: str, rows: Sequence[StoredEvent]) -> None:
        """``user``'s live history from ``rows`` (under the lock): those the histories have
        reached; later ones come with the next catch-up, so none counts twice."""
        self._live.replace(user, [_event(r) for r in rows if r.id <= (self._seen_id or 0)])

    def ready(self, user: str, name: str | None = None) -> bool:
        """Whether ``user`` can be answered by model ``name`` without reading the store or the
        registry first: a version is active, no bell was heard, the user's history was not
        evicted, the model is loaded and the server's rules are bound to the catalogue; and
        in microseconds (the model does not declare :attr:`Recommender.answers_slowly`). A
        request that is not ready runs off the event loop."""
        active = self._active
        if active is None or user in self._live.evicted or self.heard():
            return False
        model = (active.model if name is None or name == active.name
                 else active.others.get(name))
        return (model is not None and not model.answers_slowly
                and (not self.rules or model.name in active.engines))

    def _read_news(self, user: str) -> None:
        if self.heard():
            self.catch_up()
        if user in self._live.evicted and self._active is not None:
            self._reread_evicted(user)

    def _read_users(self) -> dict[str, dict[str, Any]]:
        stored = self.store.users()
        return {str(u): {str(k): v for k, v in row.items() if v is not None and not (
                    isinstance(v, float) and np.isnan(v))}
                for u, row in stored.to_dict("index").items()}

    def live_events(self, user: str) -> list[Event] | None:
        """``user``'s events since the version's training, in order, or None when there are
        none."""
        return self._live.get(user)

    def query(self, user: str, device: str | None = None) -> Query:
        """What the chain is asked for ``user``: live events, stored features, the time now
        and the request's ``device``."""
        users = self._users or {}
        return Query(user=user, history=self.live_events(user),
                     user_features=users.get(user, {}), time=_now(), context=_context(device))

    # -- answers --------------------------------------------------------------------------
    def recommend(self, user: str, k: int, *, offset: int = 0, name: str | None = None,
                  constraint: str | None = None, rules: Sequence[Rule] = (),
                  active: Active | None = None, explain: bool = False,
                  device: str | None = None) -> tuple[Active, list[RankedItem]]:
        """Up to ``k`` items for ``user`` after ``offset``, the model first, then popularity,
        asked from ``device`` (when the request names one).

        The server's rules apply first, then the request's ``rules`` and ``constraint``.
        """
        self._read_news(user)
        active = active or self.serving()
        model = self.named(active, name)
        per_request = constraint is not None or bool(rules)
        engine = self._request_engine(active, model, constraint, rules)
        plain = not per_request and not explain
        key = (active.version, model.name, offset + k,
               device if model.supports(Capability.CONTEXT) else None)
        cached = self.answers.get(user, key) if plain else None
        if cached is not None:
            return active, cached[offset:]
        ticket = self.answers.ticket()
        query = self.query(user, device)  # read after the ticket: never stale
        answer = self._chain(active, model, engine).recommend(
            query, offset + k, explain=explain, hidden=active.hidden)
        if plain:
            self.answers.put(user, key, answer, ticket)
        return active, answer[offset:]

    def recommend_session(self, session: Sequence[Event], k: int, *, offset: int = 0,
                          name: str | None = None, constraint: str | None = None,
                          rules: Sequence[Rule] = (), explain: bool = False,
                          device: str | None = None,
                          ) -> tuple[Active, list[RankedItem], list[str]]:
        """Up to ``k`` items after ``offset`` for an anonymous visitor known only by
        ``session`` (events, oldest first), and the session's item ids the model does not know.

        The session is the visitor's whole history: every model reads it as it reads a user's
        live events (order models their order, the others their bag), its items are not
        recommended back, and items unknown to the model are left out of it. Never cached.
        """
        if self.heard():
            self.catch_up()  # deleted items, rules' features
        active = self.serving()
        model = self.named(active, name)
        engine = self._request_engine(active, model, constraint, rules)
        query = Query(history=list(session), time=_now(), context=_context(device))
        answer = self._chain(active, model, engine).recommend(
            query, offset + k, explain=explain, hidden=active.hidden)
        ids = list(dict.fromkeys(event.item_id for event in session))
        unknown = [i for i, known in zip(ids, model.items_.index(ids, missing="negative") >= 0,
                                         strict=True) if not known]
        return active, answer[offset:], unknown

    def _request_engine(self, active: Active, model: Recommender, constraint: str | None,
                        rules: Sequence[Rule]) -> RuleEngine | None:
        """The server's rules, then the request's ``rules`` and ``constraint``, bound to
        ``model``'s catalogue; None when there are none."""
        engine = self._global_engine(active, model) if self.rules else None
        if constraint is None and not rules:
            return engine
        requested = list(rules)
        if constraint is not None:
            parse_constraint(constraint)
            requested.append(Require(where=constraint))
        return self._engine(active, model, [*self.rules, *requested],
                            blame="rules" if rules else "constraint")

    @staticmethod
    def _chain(active: Active, model: Recommender, engine: RuleEngine | None) -> FallbackChain:
        """``model``, then the version's segment popularity, then popularity."""
        return FallbackChain([m for m in (model, active.segment, active.popularity)
                              if m is not None], engine)

    def similar(self, item: str, k: int) -> tuple[Active, list[tuple[str, float]]]:
        """The ``k`` items most similar to ``item``, deleted items left out.

        ``item`` itself may be deleted: "no longer available, but here are similar ones".
        """
        active = self.active
        hidden = active.hidden_ids if active.hidden else set()
        ids, scores = active.model.similar_items(item, k + len(hidden))
        found = [(str(i), float(v)) for i, v in zip(ids, scores, strict=True)
                 if i is not None and i not in hidden]
        return active, found[:k]


class Poller:
    """A daemon thread that :meth:`ServingState.poll`\\ s every ``seconds``, and at once when
    the bell says a version was activated (by another process of this host)."""

    def __init__(self, state: ServingState, seconds: float, *, tick: float = 0.05) -> None:
        self.state = state
        self.seconds = seconds
        self.tick = min(tick, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recengine-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        models = self.state.bell.read()[Ring.MODELS]
        due = time.monotonic() + self.seconds
        while not self._stop.wait(self.tick):
            rung = self.state.bell.read()[Ring.MODELS]
            if rung == models and time.monotonic() < due:
                continue
            models, due = rung, time.monotonic() + self.seconds
            try:
                self.state.poll()
            except Exception:  # the thread must never die; the next poll tries again
                log.exception("reading the store's changes failed")

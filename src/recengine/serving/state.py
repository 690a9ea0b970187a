"""What the server holds between requests: the active model, its fallbacks, live histories.

The active model is one immutable :class:`Active` snapshot. :meth:`ServingState.swap` builds the
new snapshot first (loading from the registry, fitting the popularity fallback) and only then
replaces the reference under a lock, so a request that already took the old snapshot finishes on
it, and no request ever sees a half-loaded model.

Events posted to the API are stored *and* remembered per user, in order: that user's next
recommendation asks each model with a :class:`~recengine.data.query.Query` whose history holds
them after the training history (the version's saved training data), folded in without
retraining. The query also carries the user's features as stored now (a new user PUT a moment
ago is placed in a segment) and the request time.

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
import threading
from collections.abc import Mapping, Sequence
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
from recengine.models.base import Recommender
from recengine.models.constraints import parse_constraint
from recengine.models.fallback import FallbackChain, RankedItem
from recengine.models.popularity import Popularity
from recengine.models.rules import Exclude, Require, Rule, RuleEngine
from recengine.serving.cache import AnswerCache
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["Active", "NoActiveModelError", "ServingState"]

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


def _add_rows(live: dict[str, list[Event]], records: Sequence[Mapping[str, Any]]) -> None:
    """Append each event to its user's live history, in arrival order (each weighs 1)."""
    for r in records:
        value, time = r.get("value"), r.get("timestamp")
        live.setdefault(str(r["user_id"]), []).append(Event(
            str(r["item_id"]), str(r.get("event_type") or ""),
            float("nan") if value is None or pd.isna(value) else float(value),
            NO_TIME if time is None or pd.isna(time) else int(pd.Timestamp(time).timestamp())))


def _records(events: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [c for c in ("user_id", "item_id", "event_type", "value", "timestamp")
               if c in events.columns]
    return events[columns].to_dict("records")


class ServingState:
    """The serving state shared by every request (thread-safe).

    Models of at least ``approximate_min_items`` items answer plain top-k from an HNSW index
    (:mod:`recengine.models.retrieval`) searched with ``ef_search``; None answers exactly.
    Plain answers (no rules, no constraint, no reasons) of the last ``cache_users`` users are
    kept until their history or the model changes. ``rules`` (business rules) apply to every
    answer, before those of the request.
    """

    def __init__(self, registry: ModelRegistry, store: EventStore, *,
                 approximate_min_items: int | None = None, ef_search: int = 64,
                 cache_users: int = 0, rules: Sequence[Rule] = ()) -> None:
        self.registry = registry
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
        self._live: dict[str, list[Event]] = {}
        #: Stored users' features (user → feature → value): read from the store when the first
        #: version loads, then kept up to date by :meth:`user_written`.
        self._users: dict[str, dict[str, Any]] | None = None

    # -- the model ------------------------------------------------------------------------
    @property
    def active(self) -> Active:
        current = self._active  # one reference read: atomic
        if current is None:
            raise NoActiveModelError("no model is loaded: publish and activate a registry "
                                     "version, then POST /v1/models/{version}/activate")
        return current

    @property
    def version(self) -> str | None:
        current = self._active
        return None if current is None else current.version

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

    def swap(self, version: str, *, activate: bool = False) -> Active:
        """Serve ``version`` from now on; requests already running finish on the old model.

        The version served before stays loaded, so that rolling back to it is instant (loading
        and indexing 100,000 items takes seconds).
        """
        current = self._active
        new = current if current is not None and current.version == version else (
            self._previous if self._previous is not None and self._previous.version == version
            else self.build(version))
        live, seen_id = self._replay(new)
        if self._users is None:
            self._users = self._read_users()
        with self._lock:
            self._hide(new, self.store.deleted_items())  # under the lock: see catalogue_changed
            if activate:
                self.registry.activate(version)
            if current is not new:
                self._previous = current
            if live is not None:
                self._live = live
                self._remember(_records(self.store.events(since_id=seen_id)))
            self._active = new
            self._from_store = None
            self.answers.clear()
        return new

    def _replay(self, active: Active) -> tuple[dict[str, list[Event]] | None, int]:
        """Live histories for ``active``: the stored events it was not trained on.

        So a restarted server (or several) folds in what arrived after training, and a newly
        trained version does not count twice what it has already learned. None (keep the live
        histories as they are) when the manifest does not say which events the version saw.
        An event stored while the swap runs may be counted twice; none is lost.
        """
        if active.trained_through is None:
            return None, 0
        events = self.store.events(since_id=active.trained_through)
        live: dict[str, list[Event]] = {}
        _add_rows(live, _records(events))
        seen_id = int(events["id"].max()) if len(events) else active.trained_through
        return live, seen_id

    def rollback(self) -> Active:
        """Serve the version active before this one; if it cannot be loaded, the registry
        points back at the version still served, and the error is raised."""
        served = self.version
        with self._lock:
            target = self.registry.rollback()
        try:
            return self.swap(target)
        except ModelLoadError:
            if served is not None:
                self.registry.activate(served)
            raise

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

    # -- live histories -------------------------------------------------------------------
    def remember(self, records: Sequence[Mapping[str, Any]], skipped_rows: set[int]) -> None:
        """Add newly stored records to live histories: all but ``skipped_rows`` (1-based row
        numbers of records rejected, or stored before)."""
        accepted = [r for row, r in enumerate(records, start=1) if row not in skipped_rows]
        with self._lock:
            self._remember(accepted)

    def _remember(self, records: Sequence[Mapping[str, Any]]) -> None:
        _add_rows(self._live, records)
        for user in {str(r["user_id"]) for r in records}:
            self.answers.forget(user)

    def forget(self, user: str) -> None:
        """After ``user`` was deleted: their live events go, and popularity over the store
        (while no version is active) is counted again without them."""
        with self._lock:
            self._live.pop(user, None)
            self._from_store = None
            self.answers.forget(user)

    def _read_users(self) -> dict[str, dict[str, Any]]:
        stored = self.store.users()
        return {str(u): {str(k): v for k, v in row.items() if v is not None and not (
                    isinstance(v, float) and np.isnan(v))}
                for u, row in stored.to_dict("index").items()}

    def user_written(self, user: str, features: Mapping[str, Any] | None) -> None:
        """After ``user`` was stored with ``features`` (None: deleted): the next answer places
        them by these features (their kept answer is dropped)."""
        with self._lock:
            users = self._users if self._users is not None else self._read_users()
            if features is None:
                users.pop(user, None)
            else:
                users[user] = dict(features)
            self._users = users
            self.answers.forget(user)

    def live_events(self, user: str) -> list[Event] | None:
        """``user``'s events since the version's training, in order, or None when there are
        none."""
        return self._live.get(user) or None

    def query(self, user: str) -> Query:
        """What the chain is asked for ``user``: live events, stored features, the time now."""
        users = self._users or {}
        return Query(user=user, history=self.live_events(user),
                     user_features=users.get(user, {}),
                     time=datetime.now(UTC).replace(tzinfo=None))

    # -- answers --------------------------------------------------------------------------
    def recommend(self, user: str, k: int, *, offset: int = 0, name: str | None = None,
                  constraint: str | None = None, rules: Sequence[Rule] = (),
                  active: Active | None = None,
                  explain: bool = False) -> tuple[Active, list[RankedItem]]:
        """Up to ``k`` items for ``user`` after ``offset``, the model first, then popularity.

        The server's rules apply first, then the request's ``rules`` and ``constraint``.
        """
        active = active or self.serving()
        model = self.named(active, name)
        engine = self._global_engine(active, model) if self.rules else None
        per_request = constraint is not None or bool(rules)
        if per_request:
            requested = list(rules)
            if constraint is not None:
                parse_constraint(constraint)
                requested.append(Require(where=constraint))
            engine = self._engine(active, model, [*self.rules, *requested],
                                  blame="rules" if rules else "constraint")
        plain = not per_request and not explain
        key = (active.version, model.name, offset + k)
        cached = self.answers.get(user, key) if plain else None
        if cached is not None:
            return active, cached[offset:]
        ticket = self.answers.ticket()
        query = self.query(user)  # read after the ticket: never stale
        chain = FallbackChain([m for m in (model, active.segment, active.popularity)
                               if m is not None], engine)
        answer = chain.recommend(query, offset + k, explain=explain, hidden=active.hidden)
        if plain:
            self.answers.put(user, key, answer, ticket)
        return active, answer[offset:]

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

"""What the ranker reads about each (query, candidate) pair, as one row of numbers.

Every feature is one a refit leaves meaningful: source scores standardised per request and ranks
(not raw factors, whose axes a refit rotates), item popularity as a share and its recent trend,
encoded item and user features, the user's activity and recency, the request's hour, weekday and
device, and how alike the candidate is to the user's recent items. :class:`Profile` holds the
per-item and per-user part, computed once per fit; :func:`signals` adds the per-request part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recengine.data.query import NO_TIME, Queries
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.models.base import Recommender
from recengine.models.features import FeatureEncoder
from recengine.models.hybrid.candidates import Candidates

__all__ = ["Profile", "correlations", "device_block", "device_columns", "echoes", "feature_names",
           "first_answer", "known_devices", "signals"]

_DAY = 86_400.0
_SOURCE_PARTS = ("score", "log-rank", "proposed")
_REQUEST = ("log-history", "log-hours-since-active", "knows-time", "hour-sin", "hour-cos",
            "weekday-sin", "weekday-cos", "known-user")
_SIMILARITY = ("similarity-max", "similarity-mean")
#: A device is one of the ranker's inputs when at least this share of the training events that
#: name a device name it (rarer ones read as unknown); at most :data:`MAX_DEVICES` of them.
MIN_DEVICE_SHARE = 0.01
MAX_DEVICES = 16


@dataclass(frozen=True)
class Profile:
    """Per-item and per-user features of one training set, and the names of their columns."""

    items: np.ndarray
    item_names: tuple[str, ...]
    users: np.ndarray
    user_names: tuple[str, ...]
    #: The training log's latest time (seconds), what "how long since active" is measured to
    #: when a request gives no time; :data:`NO_TIME` when the log has none.
    latest: int
    #: The devices the ranker tells apart (one input each), the training log's most common;
    #: none when its events name no device.
    devices: tuple[str, ...] = ()
    #: ``[n_items, len(devices)]``: how much more often than items at large each item's
    #: events came from each device (the log of the ratio of smoothed shares).
    affinity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def device_codes(self, names: Sequence[str | None]) -> np.ndarray:
        """Each name's position in :attr:`devices` plus one; 0 for a device not among them
        (or none)."""
        return _device_codes(self.devices, names)

    @classmethod
    def of(cls, data: TrainingData, *, max_columns: int, trend_days: float,
           devices: tuple[str, ...] = ()) -> Profile:
        """``data``'s profile, telling ``devices`` apart: the same devices for every carve of
        a fit and for its final profile (see :func:`known_devices`), since the ranker's inputs
        are in their order."""
        counts = data.item_counts().astype(np.float64)
        share = np.log((counts + 1.0) / (counts.sum() + len(counts)))
        percentile = (np.argsort(np.argsort(counts, kind="stable"), kind="stable")
                      / max(len(counts) - 1, 1))
        times = data.log.timestamps
        known = times != NO_TIME
        latest = int(times[known].max()) if known.any() else NO_TIME
        trend = np.zeros(len(counts))
        if known.any():
            recent = data.log.items[known & (times >= latest - trend_days * _DAY)]
            recent_counts = np.bincount(recent, minlength=len(counts)).astype(np.float64)
            trend = (np.log((recent_counts + 1.0) / (recent_counts.sum() + len(counts)))
                     - share)
        item_cols, item_names = _encoded(data.item_features, data.item_feature_kinds,
                                         max_columns, data.n_items)
        user_cols, user_names = _encoded(data.user_features, data.user_feature_kinds,
                                         max_columns, data.n_users)
        items = np.column_stack([share, percentile, trend, counts == 0,
                                 item_cols]).astype(np.float32)
        return cls(items, ("log-popularity-share", "popularity-percentile", "trend",
                           "no-events", *item_names), user_cols, user_names, latest, devices,
                   _affinity(data, devices))


def _affinity(data: TrainingData, devices: tuple[str, ...]) -> np.ndarray:
    """Each item's log share of its events from each of ``devices`` (among those devices),
    less that of all events; one event per device is added to every item's counts, so an item
    with few events reads near an even share rather than at an extreme."""
    log = data.log
    codes = _device_codes(devices, log.device_names)[log.devices]
    known = codes > 0
    counts = np.zeros((data.n_items, len(devices)))
    np.add.at(counts, (log.items[known], codes[known] - 1), 1.0)
    own = np.log((counts + 1.0) / (counts.sum(axis=1, keepdims=True) + len(devices)))
    total = counts.sum(axis=0)
    overall = np.log((total + 1.0) / (total.sum() + len(devices)))
    return (own - overall).astype(np.float32)


def _device_codes(devices: Sequence[str], names: Sequence[str | None]) -> np.ndarray:
    index = {name: k + 1 for k, name in enumerate(devices)}
    return np.array([index.get(name, 0) if name else 0 for name in names], np.int64)


def known_devices(data: TrainingData) -> tuple[str, ...]:
    """The log's devices with at least :data:`MIN_DEVICE_SHARE` of the events that name one,
    the most common first (ties by name), at most :data:`MAX_DEVICES`."""
    log = data.log
    counts = np.bincount(log.devices, minlength=len(log.device_names))[1:]
    named = counts.sum()
    if not named:
        return ()
    order = sorted(range(len(counts)), key=lambda k: (-counts[k], log.device_names[k + 1]))
    return tuple(log.device_names[k + 1] for k in order[:MAX_DEVICES]
                 if counts[k] >= MIN_DEVICE_SHARE * named)


def _encoded(table: pd.DataFrame, kinds: dict[str, FeatureKind], max_columns: int,
             n_rows: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The table's non-text fields one-hot encoded, narrowest first, as long as the columns
    fit in ``max_columns`` (a wide field is left out whole, never cut)."""
    blocks: list[tuple[int, np.ndarray, list[str]]] = []
    for column, kind in kinds.items():
        if FeatureKind(kind) == FeatureKind.TEXT or column not in table.columns:
            continue
        encoder = FeatureEncoder(columns=(column,), weights={column: 1.0})
        block = encoder.fit_transform(table, {column: FeatureKind(kind)}).toarray()
        blocks.append((block.shape[1], block, list(encoder.feature_names_)))
    chosen, names, width = [], [], 0
    for size, block, block_names in sorted(blocks, key=lambda b: b[0]):
        if width + size > max_columns:
            continue
        chosen.append(block)
        names += block_names
        width += size
    if not chosen:
        return np.zeros((n_rows, 0), np.float32), ()
    return np.hstack(chosen).astype(np.float32), tuple(names)


def feature_names(tags: Sequence[str], profile: Profile, similarity: bool) -> list[str]:
    """The name of each column :func:`signals` writes, in order (the last is
    :func:`first_answer`'s)."""
    names = [f"{tag}:{part}" for tag in tags for part in _SOURCE_PARTS]
    names += [f"item:{n}" for n in profile.item_names]
    names += [f"user:{n}" for n in profile.user_names]
    names += list(_REQUEST)
    names += [f"device:{d}" for d in profile.devices]
    names += ["device:affinity"] if profile.devices else []
    return names + (list(_SIMILARITY) if similarity else []) + ["first-answer:score"]


def device_columns(n_sources: int, profile: Profile) -> slice:
    """Where :func:`signals` writes the request's device (one column per known device, then
    the candidate's :attr:`Profile.affinity` to it: :func:`device_block`)."""
    start = (len(_SOURCE_PARTS) * n_sources + len(profile.item_names) + len(profile.user_names)
             + len(_REQUEST))
    return slice(start, start + (len(profile.devices) + 1 if profile.devices else 0))


def device_block(profile: Profile, items: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """For each candidate ``items[k]`` of a request from device ``codes[k]`` (see
    :meth:`Profile.device_codes`; 0 unknown): the device one-hot and the item's affinity to
    it (all 0 for an unknown device)."""
    out = np.zeros((len(items), len(profile.devices) + 1), np.float32)
    on = np.flatnonzero(codes > 0)
    out[on, codes[on] - 1] = 1.0
    out[on, -1] = profile.affinity[items[on], codes[on] - 1]
    return out


def first_answer(scores: np.ndarray, indptr: np.ndarray, order: Sequence[int],
                 unknown: np.ndarray | None = None, blend: int = 1,
                 echoes: Mapping[int, int] | None = None) -> np.ndarray:
    """Each candidate's standardised score from the first source in ``order`` that tells the
    query's candidates apart (a source that needs a history scores a new user's all alike);
    where the first of ``order`` does, the mean of the first ``blend`` such sources' scores
    (the blend was chosen where the best source answers, not for the fallbacks). Candidates
    flagged ``unknown`` (items without training events: a collaborative source scores them
    all alike) are placed among themselves the same way, by their own first source.

    ``echoes`` maps a source to an earlier one that says the same (:func:`echoes`): the two
    are one voice, and the mean is over voices, each the mean of its sources, so a source
    present twice weighs as one (its two fits averaging out each other's noise).

    What the ranker starts from: the best sources where they have an answer, the next where
    not. Query 0's two candidates score alike by source 0, so source 1 orders them:

    >>> scores = np.array([[1.0, 0.5, 0.0], [1.0, 0.25, 1.0], [0.5, 2.0, 0.0], [0.75, 1.0, 1.0]])
    >>> first_answer(scores, np.array([0, 2, 4]), order=[0, 1, 2]).tolist()
    [0.5, 0.25, 0.5, 0.75]
    >>> [round(x, 4) for x in first_answer(scores, np.array([0, 2, 4]), order=[0, 1, 2],
    ...                                    blend=3).tolist()]
    [0.5, 0.25, 0.8333, 0.9167]

    Source 1 an echo of source 0: query 1's blend of three is (the mean of sources 0 and 1,
    and source 2) / 2:

    >>> first_answer(scores, np.array([0, 2, 4]), order=[0, 1, 2], blend=3,
    ...              echoes={1: 0}).tolist()
    [0.5, 0.25, 0.625, 0.9375]
    """
    scores = np.asarray(scores, dtype=np.float32)
    echoes = echoes or {}
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    flag = np.zeros(len(scores), np.int64) if unknown is None else np.asarray(unknown, np.int64)
    group = rows * 2 + flag
    n_groups = 2 * len(lengths)
    taken = np.zeros(n_groups, np.int64)  # sources taken so far, per group
    voices = np.zeros(n_groups, np.int64)  # and the voices they make
    limit = np.ones(n_groups, np.int64)  # blend where order[0] answers, else one source
    voice = {source: echoes.get(source, source) for source in order}
    members: dict[int, np.ndarray] = {}  # per voice: its sources taken, per group
    chosen = []
    for position, source in enumerate(order):
        high = np.full(n_groups, -np.inf, np.float32)
        low = np.full(n_groups, np.inf, np.float32)
        np.maximum.at(high, group, scores[:, source])
        np.minimum.at(low, group, scores[:, source])
        if position == 0:
            limit[high > low] = blend
        take = (taken < limit) & (high > low)
        count = members.setdefault(voice[source], np.zeros(n_groups, np.int64))
        voices += take & (count == 0)
        count += take
        taken += take
        chosen.append((source, take))
    total = np.zeros(len(scores), np.float32)
    for source, take in chosen:
        share = np.maximum(members[voice[source]][group], 1).astype(np.float32)
        total += np.where(take[group], scores[:, source] / share, np.float32(0.0))
    none = taken[group] == 0
    total[none] = scores[none, order[0]]
    return total / np.maximum(voices[group], 1).astype(np.float32)


#: Sources whose scores of the same candidates correlate above this say the same thing (WALS
#: and WALS with item features on MovieLens, where the genres add little): a mean of both
#: counts that one voice twice.
ECHO_CORRELATION = 0.95


def correlations(scores: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """``[n_sources, n_sources]``: how alike the sources' standardised scores of the same
    candidates are (Pearson's, each list's own mean taken out: what a blend sees is the
    order within a list).

    >>> correlations(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 1.0], [3.0, 6.0, 0.0]]),
    ...              np.array([0, 3])).round(2).tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    sums = np.stack([np.bincount(rows, column, minlength=len(lengths)) for column in scores.T],
                    axis=1)
    centred = scores - (sums / np.maximum(lengths, 1)[:, None])[rows]
    spread = np.sqrt((centred ** 2).sum(axis=0))
    spread[spread == 0] = 1.0
    return (centred.T @ centred) / np.outer(spread, spread)


def echoes(likeness: np.ndarray, order: Sequence[int],
           threshold: float = ECHO_CORRELATION) -> dict[int, int]:
    """Each source of ``order`` whose scores correlate above ``threshold`` with a source
    before it (``likeness``: :func:`correlations`), mapped to the first such source's voice:
    the source it echoes, or what that one echoes in turn. :func:`first_answer` weighs each
    voice once."""
    alike = likeness > threshold
    out: dict[int, int] = {}
    for position, source in enumerate(order):
        earlier = [k for k in order[:position] if alike[source, k]]
        if earlier:
            out[int(source)] = out.get(earlier[0], int(earlier[0]))
    return out


def signals(candidates: Candidates, queries: Queries, profile: Profile,
            similar_to: Recommender | None, recent: int,
            order: Sequence[int] | None, blend: int = 1,
            echoes: Mapping[int, int] | None = None) -> np.ndarray:
    """``[n_candidates, n_features]`` float32, columns as :func:`feature_names` says; the
    sources' preference ``order``, ``blend`` and ``echoes`` give the last
    (:func:`first_answer`), left at 0 when the order is not known yet (a fit learns it from
    the lists these signals make)."""
    rows, items = candidates.rows, candidates.items
    proposed = candidates.proposed.astype(np.float32)
    per_source = np.stack([candidates.scores, np.log1p(candidates.ranks.astype(np.float32)),
                           proposed], axis=2).reshape(len(items), -1)
    users = queries.users
    known = users >= 0
    user_block = np.zeros((len(queries), profile.users.shape[1]), np.float32)
    user_block[known] = profile.users[users[known]]
    columns = [per_source, profile.items[items], user_block[rows],
               _request(queries, profile)[rows]]
    if profile.devices:
        codes = (profile.device_codes([c.get("device") for c in queries.context])
                 if queries.context is not None else np.zeros(len(queries), np.int64))
        columns.append(device_block(profile, items, codes[rows]))
    if similar_to is not None:
        columns.append(_similarity(candidates, queries, similar_to, recent))
    columns.append(np.zeros((len(items), 1), np.float32) if order is None else first_answer(
        candidates.scores, candidates.indptr, order, unknown=profile.items[items, 3] > 0,
        blend=blend, echoes=echoes)[:, None])
    return np.hstack(columns).astype(np.float32)


def _request(queries: Queries, profile: Profile) -> np.ndarray:
    """Per query: history length, hours since the last event, hour and weekday of the
    request (its time, else the last event's), whether the user is a training user."""
    seqs = queries.sequences
    lengths = np.diff(seqs.indptr)
    last = np.full(len(queries), NO_TIME, dtype=np.int64)
    has = lengths > 0
    last[has] = seqs.timestamps[seqs.indptr[1:][has] - 1]
    asked = queries.times if queries.times is not None else np.full(len(queries), NO_TIME)
    reference = np.where(asked != NO_TIME, asked, profile.latest)
    since = np.where((last != NO_TIME) & (reference != NO_TIME),
                     np.maximum(reference - last, 0) / 3600.0, 0.0)
    moment = np.where(asked != NO_TIME, asked, last)
    knows = moment != NO_TIME
    seconds = np.where(knows, moment, 0).astype(np.float64)
    hour = 2 * np.pi * (seconds % _DAY) / _DAY
    weekday = 2 * np.pi * ((seconds // _DAY + 3) % 7) / 7  # 1970-01-01 was a Thursday
    on = knows.astype(np.float64)
    return np.column_stack([
        np.log1p(np.diff(queries.seen()[0])), np.log1p(since), on,
        on * np.sin(hour), on * np.cos(hour), on * np.sin(weekday), on * np.cos(weekday),
        (queries.users >= 0)]).astype(np.float32)


def _similarity(candidates: Candidates, queries: Queries, model: Recommender,
                recent: int) -> np.ndarray:
    """Each candidate's largest and mean similarity to its query's ``recent`` latest items."""
    out = np.zeros((len(candidates.items), 2), np.float32)
    seqs = queries.events()
    for row in range(len(candidates)):
        history = seqs.row_items(row)
        if not len(history):
            continue
        latest = np.unique(history[::-1], return_index=True)
        last = latest[0][np.argsort(latest[1])][:recent]  # distinct, most recent first
        span = slice(candidates.indptr[row], candidates.indptr[row + 1])
        sims = np.asarray(model.similarity(last))[:, candidates.items[span]]
        out[span, 0] = sims.max(axis=0)
        out[span, 1] = sims.mean(axis=0)
    return out

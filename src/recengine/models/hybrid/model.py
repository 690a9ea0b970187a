"""The hybrid: candidates from several recommenders, ranked by a network over every signal.

The YouTube design in two stages. Candidate generation asks each source (collaborative,
item-to-item, content, popularity: any recommender) for its best items and keeps the union
(:mod:`~recengine.models.hybrid.candidates`); the ranker, a deep & cross network
(:mod:`~recengine.models.hybrid.ranker`), orders the union from what every source thinks of
each candidate and from item, user, history and request features
(:mod:`~recengine.models.hybrid.signals`).

How it learns, inside ``fit``: a share of each user's pairs is carved out of the training data
(random, or the most recent; some users lose all of theirs, to stand for new users); the sources are
fitted on the rest; their candidates for the carved users are labelled by the carved pairs (when
events name their device, each list asks from one of the devices the pairs were chosen on, or none,
so that the ranker learns what people choose on each); the ranker learns to put those first,
stopping early on users it does not train on. It starts as the sources' first answer (each query
ranked by the mean of the best sources that can tell its candidates apart, two sources that score
alike counted once) and keeps a trained network only where it validates better, by more than
chance per user; for new users, and requests that name no device, only when enough of them show
it. Then the sources are refitted on all the data (the ranker's features do not depend on a fit's
scale or axes), so serving loses none of it.
All of it is one model: saved, published and loaded whole, its sources inside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recengine.data.query import NO_TIME, HistorySource, Queries, take_ranges
from recengine.data.training_data import TrainingData, csr_from_pairs
from recengine.data.vocabulary import Vocabulary
from recengine.errors import DataError, NotSupportedError
from recengine.models.base import (
    DEFAULT_BATCH,
    Capability,
    Recommender,
    ScoreTransform,
    TrainingOptions,
    check_fitted,
)
from recengine.models.hybrid.candidates import Candidates, Source, propose
from recengine.models.hybrid.config import HybridConfig, SourceConfig
from recengine.models.hybrid.ranker import (
    Lists,
    build_network,
    clearly_better,
    fit_ranker,
    ranker_scores,
    validation_ndcg,
)
from recengine.models.hybrid.ratings import RatingHead, fit_rating_head, rating_feature_names
from recengine.models.hybrid.signals import (
    Profile,
    correlations,
    device_block,
    device_columns,
    echoes,
    feature_names,
    first_answer,
    known_devices,
    signals,
)
from recengine.models.retrieval import ItemIndex
from recengine.models.torch_training import (
    load_network,
    network_arrays,
    torch_module,
    training_session,
)
from recengine.progress import ProgressCallback

__all__ = ["Hybrid", "carve"]

#: Rows of score matrices held at once while ranking: bounds memory at about
#: ``_CELLS × (8 + 8 × sources)`` bytes whatever the catalogue's size.
_CELLS = 2**21


def _last_events(data: TrainingData) -> np.ndarray:
    """For each stored pair of ``data.feedback``, the position in the time-ordered log of its
    last event."""
    feedback = data.feedback
    rows = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(feedback.indptr))
    owner = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(data.log.indptr))
    keys = owner * data.n_items + data.log.items
    unique, from_end = np.unique(keys[::-1], return_index=True)
    if not len(unique):
        return np.zeros(feedback.nnz, dtype=np.int64)
    last = len(keys) - 1 - from_end
    where = np.searchsorted(unique, rows * data.n_items + feedback.indices)
    return last[np.minimum(where, len(unique) - 1)]


def carve(data: TrainingData, fraction: float, how: str, seed: int, min_items: int = 3,
          whole: float = 0.0) -> np.ndarray:
    """Which pairs of ``data.feedback`` (one flag per stored entry) to hold out.

    ``how``: ``"random"``, a ``fraction`` of each user's items, at least one, for users with
    ``min_items`` or more (a ``whole`` share of those users lose every pair: new users, as far
    as the rest can tell); ``"time"``, the same share, each user's latest pairs; ``"cutoff"``,
    every pair whose last event is in the newest ``fraction`` of all pairs' times (one moment
    for everyone, as a global time split draws its test part: users with nothing before it are
    new users, users with nothing after it are not asked).
    """
    feedback = data.feedback
    if how == "cutoff":
        times = data.log.timestamps[_last_events(data)]
        if (times == NO_TIME).any():
            raise DataError("the cutoff carve needs every event's time", column="carve")
        return times >= np.quantile(times, 1.0 - fraction)
    counts = np.diff(feedback.indptr)
    key = (_last_events(data).astype(np.float64) if how == "time"
           else np.random.default_rng(seed).random(feedback.nnz))
    drop = np.zeros(feedback.nnz, dtype=bool)
    eligible = np.flatnonzero(counts >= min_items)
    cold = set(np.random.default_rng(seed + 1).choice(
        eligible, size=round(whole * len(eligible)), replace=False).tolist())
    for user in eligible:
        start, stop = feedback.indptr[user], feedback.indptr[user + 1]
        n_out = stop - start if user in cold else max(1, round(fraction * (stop - start)))
        drop[start + np.argsort(-key[start:stop], kind="stable")[:n_out]] = True
    return drop


def new_item_pairs(data: TrainingData, share: float, seed: int) -> np.ndarray:
    """The pairs (one flag per stored entry of ``data.feedback``) of a ``share`` of the items
    with pairs, drawn at random: taken out with them, they leave those items new.

    The carve's held pairs of those items stay what the ranker learns to find; the rest are
    hidden (out of the data, and never a candidate for their user), so that a new item is
    held out as often as any other and the ranker learns no lift for having no events.
    """
    known = np.flatnonzero(np.bincount(data.feedback.indices, minlength=data.n_items))
    held = np.random.default_rng(seed).choice(known, size=round(share * len(known)),
                                              replace=False)
    return np.isin(data.feedback.indices, held)


class Hybrid(Recommender):
    """Candidates from every source in ``config.sources``, ranked by a DCN-v2."""

    name = "hybrid"
    Config = HybridConfig
    config: HybridConfig
    devices = ("cpu", "cuda")
    answers_slowly = True  # six or so sources, then the network over hundreds of candidates

    sources_: tuple[Source, ...]
    profile_: Profile
    ranker_: Any
    #: Sources (positions) in the order the ranker starts from: each query from the first
    #: that tells its candidates apart (the mean of the first ``blend_`` such).
    order_: tuple[int, ...]
    blend_: int
    #: Each source that says what one before it in ``order_`` says (their scores of the
    #: training lists correlate above ``ECHO_CORRELATION``), mapped to that one: the two are
    #: one voice in a blend.
    echoes_: dict[int, int]
    #: Whether the ranker orders new users' candidates (it validated better on enough of
    #: them), or they keep the sources' first answer.
    ranks_new_users_: bool
    #: Whether the ranker orders new items (without training events) among themselves (it
    #: validated better on the carve's new items), or they take the places it gives new
    #: items in the sources' first order.
    ranks_new_items_: bool
    #: Whether the ranker orders requests that name no known device (it validated better on
    #: such lists), or they keep the sources' first answer; True when the training events
    #: named no device (every request is then such a request, as the ranker learned from).
    ranks_without_device_: bool
    #: How training went: epochs run, the best, the validation nDCG@10 of the ranker and of
    #: each source alone on the same carved users (and the rating head's, when it has one).
    training_: dict[str, Any]
    #: The rating head (:mod:`~recengine.models.hybrid.ratings`), when configured.
    ratings_: RatingHead | None

    capabilities = frozenset({Capability.SIMILAR_ITEMS})

    def supports(self, capability: Capability) -> bool:
        """Similar items (and so MMR diversity) come from the similarity source, when the
        configuration names one; ratings from the rating head, when it has one; the request's
        device is read when the training events named devices."""
        if capability == Capability.RATINGS:
            return self.config.ratings is not None
        if capability == Capability.CONTEXT:
            return hasattr(self, "profile_") and bool(self.profile_.devices)
        if capability == Capability.SIMILAR_ITEMS:
            if hasattr(self, "sources_"):  # fitted: a source left out for want of data
                return self._similar_to(self.sources_) is not None
            return self.config.similarity_source is not None
        return super().supports(capability)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        source = self._similar_to(self.sources_)
        assert source is not None
        return source.similarity(items)

    def _active(self, data: TrainingData) -> list[SourceConfig]:
        has = {"item-features": bool(data.item_feature_kinds),
               "user-features": bool(data.user_feature_kinds)}
        return [s for s in self.config.sources if s.needs is None or has[s.needs]]

    def _fit_sources(self, sources: Sequence[SourceConfig], data: TrainingData,
                     options: TrainingOptions,
                     progress: ProgressCallback | None) -> tuple[Source, ...]:
        from recengine.models.registry import create_model

        fitted = []
        for source in sources:
            model = create_model(source.model, **source.params)
            device = options.device if options.device in model.devices else "cpu"
            own = TrainingOptions(device=device, seed=options.seed, threads=options.threads)
            if progress:
                progress(f"fitting the hybrid's source {source.tag}", 0, 1)
            fitted.append(Source(source.tag, model.fit(data, options=own), source.depth))
        return tuple(fitted)

    def _profile(self, data: TrainingData, devices: tuple[str, ...] = ()) -> Profile:
        """The per-item and per-user features of ``data``, as configured, and the request
        ``devices`` the ranker tells apart."""
        return Profile.of(data, max_columns=self.config.max_feature_columns,
                          trend_days=self.config.trend_days, devices=devices)

    def _similar_to(self, sources: Sequence[Source]) -> Recommender | None:
        tag = self.config.similarity_source
        return next((s.model for s in sources if s.tag == tag), None)

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        config = self.config
        seed = options.seed_or(config.random_state)
        active = self._active(data)
        rng = np.random.default_rng(seed)
        users = rng.permutation(np.flatnonzero(np.diff(data.feedback.indptr) >= 3))
        if not len(users):
            raise DataError("the hybrid needs users with at least 3 items to learn its ranker")
        users = users[:config.max_users]
        n_valid = max(1, round(config.validation_users * len(users)))
        valid_users, train_users = np.sort(users[:n_valid]), np.sort(users[n_valid:])
        ratings, rating_training = self._fit_ratings(data, options, seed, progress)
        train_parts: list[Lists] = []
        valid_parts: list[Lists] = []
        owners = np.repeat(np.arange(data.n_users), np.diff(data.feedback.indptr))
        pair_devices = data.log.devices[_last_events(data)]  # each pair's latest device
        devices = known_devices(data)
        with training_session(options, seed, default_threads=1) as device:
            for turn in range(config.carves):
                drop = carve(data, config.carve_fraction, config.carve, seed + turn,
                             whole=config.cold_users)
                hidden = new_item_pairs(data, config.cold_items, seed + turn + 2) & ~drop
                carved = data.drop_pairs(drop | hidden)
                sources = self._fit_sources(active, carved, options, progress)
                profile = self._profile(carved, devices)
                # each held pair's value: 1 + its device's position among the profile's
                codes = profile.device_codes(data.log.device_names)[pair_devices[drop]]
                held = csr_from_pairs(owners[drop], data.feedback.indices[drop],
                                      (1 + codes).astype(np.float32), data.feedback.shape)
                unseen = csr_from_pairs(owners[hidden], data.feedback.indices[hidden],
                                        np.ones(int(hidden.sum()), np.float32),
                                        data.feedback.shape)
                for users_, parts in ((train_users, train_parts), (valid_users, valid_parts)):
                    parts.append(self._lists(sources, profile, carved, users_, held, unseen,
                                             rng))
            train, valid = Lists.joined(train_parts), Lists.joined(valid_parts)
            alone = {s.tag: validation_ndcg(valid, valid.features[:, 3 * j])
                     for j, s in enumerate(sources)}
            # The ranker starts from the sources in the order they rank the training lists,
            # each query from the first that has an answer for it (the last input column).
            order = [int(j) for j in np.argsort([-validation_ndcg(train, train.features[
                :, 3 * j]) for j in range(len(sources))], kind="stable")]
            names = feature_names([s.tag for s in sources], profile,
                                  self._similar_to(sources) is not None)
            unknown = names.index("item:no-events")
            # Two sources that score the training lists alike are one voice in a blend.
            alike = correlations(train.features[:, :3 * len(sources):3], train.indptr)
            echo = echoes(alike, order)

            def start(lists: Lists, blend: int) -> np.ndarray:
                return first_answer(lists.features[:, :3 * len(sources):3], lists.indptr,
                                    order, unknown=lists.features[:, unknown] > 0, blend=blend,
                                    echoes=echo)

            # How many of the first sources to average, as the training lists rank it (the
            # fewest on a tie): two good sources' mean often ranks better than either.
            blends = {b: validation_ndcg(train, start(train, b))
                      for b in range(1, min(MAX_BLEND, len(sources)) + 1)}
            blend = max(blends, key=lambda b: (blends[b], -b))
            for lists in (train, valid):
                lists.features[:, -1] = start(lists, blend)
            network, epochs = fit_ranker(train, valid, config.ranker, device, progress,
                                         train.features.shape[1] - 1)
            network.to("cpu")
        new_users = _ranks_new_users(network, valid, names.index("log-history"))
        new_items = _ranks_new_items(network, valid, unknown)
        without_device = not profile.devices or _ranks_without_device(
            network, valid, device_columns(len(sources), profile))
        training = {"epochs": epochs.run, "best_epoch": epochs.best,
                    "validation_ndcg@10": validation_ndcg(valid, ranker_scores(
                        network, valid.features, "cpu")),
                    "train_users": len(train_users), "validation_users": len(valid_users),
                    "starts_from": [sources[j].tag for j in order], "blend": blend,
                    "echoes": {sources[j].tag: sources[k].tag for j, k in echo.items()},
                    "likeness_to_an_earlier_source": {
                        sources[j].tag: round(float(alike[j, order[:p]].max()), 4)
                        for p, j in enumerate(order) if p},
                    "training_ndcg@10_per_blend": {str(b): v for b, v in blends.items()},
                    "ranks_new_users": new_users, "ranks_new_items": new_items,
                    "ranks_without_device": without_device,
                    "sources_validation_ndcg@10": alone}
        if rating_training is not None:
            training["rating_head"] = rating_training
        if config.refit_sources:
            sources = self._fit_sources(active, data, options, progress)
            profile = self._profile(data, devices)
        return {"sources_": sources, "profile_": profile, "ranker_": network,
                "order_": tuple(order), "blend_": blend, "echoes_": echo,
                "ranks_new_users_": new_users,
                "ranks_new_items_": new_items, "ranks_without_device_": without_device,
                "training_": training, "ratings_": ratings}

    def _fit_ratings(self, data: TrainingData, options: TrainingOptions, seed: int,
                     progress: ProgressCallback | None,
                     ) -> tuple[RatingHead | None, dict[str, Any] | None]:
        """The rating head and how its training went, when configured (first: data without
        ratings is refused before the ranker's longer training)."""
        config = self.config
        if config.ratings is None:
            return None, None
        with training_session(options, seed, default_threads=1) as device:
            head, how = fit_rating_head(
                config.ratings, data,
                lambda sources, part: self._fit_sources(sources, part, options, progress),
                self._profile,
                device, seed, progress)
            head.network.to("cpu")
        return head, how

    def rating_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The rating head's prediction for each pair (NaN for unknown ids); recommendations
        stay the ranker's."""
        self._require(Capability.RATINGS)
        assert self.ratings_ is not None  # fitted with the configuration that declares it
        out = np.full(len(users), np.nan, dtype=np.float32)
        ok = (users >= 0) & (items >= 0)
        if ok.any():
            queries = self.training_queries(np.unique(users[ok]))
            out[ok] = self.ratings_.predict(self.profile_, queries, users[ok], items[ok])
        return out

    def _lists(self, sources: Sequence[Source], profile: Profile, data: TrainingData,
               users: np.ndarray, held: sp.csr_array, hidden: sp.csr_array,
               rng: np.random.Generator) -> Lists:
        """The candidate lists of ``users`` (training users of ``data``), labelled by ``held``
        (whose values are 1 + the device of each pair; ``rng`` draws each list's device, see
        :func:`_per_device`), without the ``hidden`` pairs (chosen, but neither data nor
        label: see :func:`new_item_pairs`); the first-answer column is left for ``_train`` to
        fill once the sources' order is known (it is learned from these lists)."""
        parts: list[tuple[Candidates, np.ndarray]] = []
        for block in _blocks(users, data.n_items):
            queries = data.queries(block)
            candidates = propose(sources, queries, self.config.candidates)
            parts.append((candidates, self._signals(candidates, queries, sources, profile,
                                                    None)))
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        lengths = np.concatenate([np.diff(c.indptr) for c, _ in parts] or [np.zeros(0)])
        np.cumsum(lengths, out=indptr[1:])
        items = np.concatenate([c.items for c, _ in parts] or [np.zeros(0, np.int32)])
        pairs = np.repeat(users, lengths.astype(np.int64)).astype(np.int64) * data.n_items + items
        labels = np.isin(pairs, _pair_keys(held, users, data.n_items))
        features = np.vstack([f for _, f in parts]) if parts else np.zeros((0, 0), np.float32)
        wanted = held[users]
        # the hidden pairs are never labels (the carve keeps them apart): no list loses one
        kept = ~np.isin(pairs, _pair_keys(hidden, users, data.n_items))
        lists = Lists(indptr, features, labels.astype(np.float32),
                      np.diff(wanted.indptr).astype(np.int64),
                      np.asarray(users, np.int64)).kept(kept)
        items = items[kept]
        if not profile.devices:
            return lists
        return _per_device(lists, items, wanted, data.n_items, profile,
                           device_columns(len(sources), profile), rng)

    def _signals(self, candidates: Candidates, queries: Queries, sources: Sequence[Source],
                 profile: Profile, order: Sequence[int] | None, blend: int = 1,
                 echoes: Mapping[int, int] | None = None) -> np.ndarray:
        return signals(candidates, queries, profile, self._similar_to(sources),
                       self.config.recent_items, order, blend, echoes)

    def _ranked(self, queries: Queries, background: int | None = None,
                blocked: np.ndarray | None = None) -> tuple[Candidates, np.ndarray]:
        """Each query's candidates (none of the ``blocked`` items) and the ranker's scores of
        them (new users keep the sources' first answer unless the ranker earned them)."""
        candidates = propose(self.sources_, queries, self.config.candidates, background,
                             blocked)
        features = self._signals(candidates, queries, self.sources_, self.profile_, self.order_,
                                 self.blend_, self.echoes_)
        ranked = ranker_scores(self.ranker_, features, "cpu")
        new, start = self._unearned(candidates, queries, features)
        ranked[new] = _handed_out(ranked[new], features[new, -1], candidates.rows[new],
                                 candidates.items[new])
        ranked[start] = features[start, -1]
        return candidates, ranked

    def _unearned(self, candidates: Candidates, queries: Queries,
                  features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the ranker did not earn the order (each a mask over the candidates): new items
        it orders among themselves only if it validated better on them; whole lists it leaves
        to the sources' first answer, those of new users and of requests that name no device,
        unless it validated better on such lists."""
        n = len(features)
        new = np.zeros(n, bool) if self.ranks_new_items_ else (
            features[:, self.feature_names.index("item:no-events")] > 0)
        start = np.zeros(n, bool)
        if not self.ranks_new_users_:
            start |= np.diff(queries.seen()[0])[candidates.rows] == 0
        if not self.ranks_without_device_:
            start |= ~features[:, device_columns(len(self.sources_), self.profile_)].any(axis=1)
        return new & ~start, start

    def _score(self, queries: Queries) -> np.ndarray:
        return self._score_among(queries, None)

    def _score_among(self, queries: Queries, blocked: np.ndarray | None) -> np.ndarray:
        """The ranker's scores of each query's candidates, proposed among the items not
        ``blocked`` (a constraint's, a rule's: the ranker orders what the request allows, not
        the few the unconstrained union happened to hold); below them, the rest of the
        catalogue (seen items included) in the order of the source the ranker starts from."""
        out = np.empty((len(queries), len(self.items_)), dtype=np.float32)
        for block, part in _query_blocks(queries, len(self.items_)):
            candidates, ranked = self._ranked(part, background=self.order_[0],
                                              blocked=blocked)
            assert candidates.background is not None
            lowest = np.full(len(block), 0.0, np.float32)
            np.minimum.at(lowest, candidates.rows, ranked)
            rest = candidates.background
            out[block] = rest - rest.max(axis=1, keepdims=True) + lowest[:, None] - 1.0
            out[block[candidates.rows], candidates.items] = ranked
        return out

    def recommend_queries(
        self,
        queries: Queries,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        transform: ScoreTransform | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As every model's; a plain request (seen items left out, no candidates, exclusions
        or transform) is answered from the ranked union alone wherever it holds ``n`` items:
        the rest of the catalogue ranks below the union (:meth:`_score`), so the answer is the
        same without scoring every item, which is most of the cost at 100,000 items."""
        if not exclude_seen or candidates is not None or exclude is not None or (
                transform is not None):
            return super().recommend_queries(
                queries, n, exclude_seen=exclude_seen, candidates=candidates, exclude=exclude,
                transform=transform, batch_size=batch_size)
        check_fitted(self)
        out_idx = np.full((len(queries), n), -1, dtype=np.int32)
        out_val = np.full((len(queries), n), np.nan, dtype=np.float32)
        for block, part in _query_blocks(queries, len(self.items_)):
            union, ranked = self._ranked(part)
            rows = union.rows
            order = np.lexsort((union.items, -ranked, rows))  # ties to the lower item
            place = np.arange(len(order)) - union.indptr[rows[order]]
            top = order[place < n]
            out_idx[block[rows[top]], place[place < n]] = union.items[top]
            out_val[block[rows[top]], place[place < n]] = ranked[top]
        short = np.flatnonzero(out_idx[:, -1] < 0) if n else np.zeros(0, np.int64)
        if len(short):  # fewer than n candidates: the rest of the catalogue completes them
            out_idx[short], out_val[short] = self._recommend_exact(queries[short], n, True,
                                                                   None, None, None)
        return out_idx, out_val

    def build_index(self, *, neighbours: int = 16, ef_construction: int = 80,
                    ef_search: int = 64, similar_items: bool = True) -> Self:
        """Index the sources that have a vector form: from then on they propose from their
        top-k graphs and score only the candidates (:mod:`~.reading`). The hybrid has no
        graph of its own, for top-k or similar items (``similar_items`` changes nothing: its
        similar items are its similarity source's exact ones)."""
        check_fitted(self)
        vectors = [s.model for s in self.sources_ if s.model.supports(Capability.RETRIEVAL)]
        if not vectors:
            raise NotSupportedError("none of the hybrid's sources has a vector form to index")
        for model in vectors:
            model.build_index(neighbours=neighbours, ef_construction=ef_construction,
                              ef_search=ef_search, similar_items=False)
        return self

    @property
    def indexes(self) -> tuple[ItemIndex, ...]:
        """The sources' HNSW graphs (none before a fit)."""
        return tuple(i for s in getattr(self, "sources_", ()) for i in s.model.indexes)

    def drop_indexes(self) -> None:
        for source in getattr(self, "sources_", ()):
            source.model.drop_indexes()

    def write_indexes(self, path: Path) -> None:
        """Each source's graphs in a folder of its own (``source-<position>``)."""
        for position, source in enumerate(self.sources_):
            if source.model.indexes:
                folder = path / f"source-{position}"
                folder.mkdir(exist_ok=True)
                source.model.write_indexes(folder)

    def read_indexes(self, path: Path) -> None:
        for position, source in enumerate(self.sources_):
            source.model.read_indexes(path / f"source-{position}")

    @property
    def feature_names(self) -> list[str]:
        """The ranker's inputs, in order."""
        return feature_names([s.tag for s in self.sources_], self.profile_,
                             self._similar_to(self.sources_) is not None)

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        return self._explain_among(queries, items, None)

    def _explain_among(self, queries: Queries, items: np.ndarray,
                       blocked: np.ndarray | None) -> list[str]:
        """Which sources proposed each item (among the items not ``blocked``, as the answer
        was drawn), and the signals that raised it most: each group of the ranker's inputs
        set to its training mean, the score's drop its weight."""
        one = queries[:1]
        candidates = propose(self.sources_, one, self.config.candidates, blocked=blocked)
        features = self._signals(candidates, one, self.sources_, self.profile_, self.order_,
                                 self.blend_, self.echoes_)
        position = {int(item): row for row, item in enumerate(candidates.items.tolist())}
        means = self.ranker_.mean.cpu().numpy()
        base = ranker_scores(self.ranker_, features, "cpu")
        groups = _groups(self.feature_names, self.sources_[self.order_[0]].tag)
        new, by_sources = self._unearned(candidates, one, features)
        moved = np.zeros((len(groups), len(features)), np.float32)
        for g, (_, columns) in enumerate(groups):
            plain = features.copy()
            plain[:, columns] = means[columns]
            changed = (features[:, columns] != means[columns]).any(axis=1)
            moved[g] = np.where(changed, base - ranker_scores(self.ranker_, plain, "cpu"), 0.0)
        tags = [s.tag for s in self.sources_]
        reasons = []
        for item in np.asarray(items).tolist():
            row = position.get(int(item))
            if row is None:
                start = self.sources_[self.order_[0]].tag
                reasons.append(f"not proposed; after the candidates, in {start}'s order")
                continue
            by = [f"{tag} (#{rank + 1})" for tag, rank, depth in zip(
                tags, candidates.ranks[row].tolist(), candidates.depths.tolist(), strict=True)
                if rank < depth]
            up = [groups[g][0] for g in np.argsort(-moved[:, row])[:2] if moved[g, row] > 0]
            # Below every source's top list: proposed only because the request ruled out
            # what ranked above it.
            proposed = (f"proposed by {', '.join(by)}" if by
                        else "proposed among the items the request allows")
            if by_sources[row]:  # the ranker's inputs did not place it: say what did
                placed = "; ranked by its sources' scores"
            elif new[row]:
                placed = "; a new item, placed among the new ones by its sources' scores"
            else:
                placed = f"; ranked up by: {', '.join(up)}" if up else ""
            reasons.append(proposed + placed)
        return reasons

    # -- saving ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {"profile.items": self.profile_.items,
                                         "profile.users": self.profile_.users}
        if self.profile_.devices:
            arrays["profile.affinity"] = self.profile_.affinity
        entries = _sources_state(self.sources_, "source", arrays)
        arrays |= network_arrays(self.ranker_, "ranker.")
        ratings = None
        if self.ratings_ is not None:
            ratings = {"sources": _sources_state(self.ratings_.sources, "rating-source", arrays),
                       "low": self.ratings_.low, "high": self.ratings_.high}
            arrays |= network_arrays(self.ratings_.network, "rating-head.")
        return arrays, {"sources": entries, "training": self.training_, "ratings": ratings,
                        "order": list(self.order_), "blend": self.blend_,
                        "echoes": [[j, k] for j, k in self.echoes_.items()],
                        "ranks_new_users": self.ranks_new_users_,
                        "ranks_new_items": self.ranks_new_items_,
                        "ranks_without_device": self.ranks_without_device_,
                        "profile": {"item_names": list(self.profile_.item_names),
                                    "user_names": list(self.profile_.user_names),
                                    "latest": self.profile_.latest,
                                    "devices": list(self.profile_.devices)}}

    def set_state(self, users: Vocabulary, items: Vocabulary, arrays: Mapping[str, np.ndarray],
                  meta: Mapping[str, Any], histories: HistorySource | None = None) -> Hybrid:
        """Each source is restored (and checked) by its own class; the profile's arrays must
        have a row per user and item and a column per named feature; the networks', the
        shapes their configurations give."""
        sources = _restore_sources(meta["sources"], "source", arrays, users, items, histories)
        names = meta["profile"]
        devices = tuple(str(d) for d in names.get("devices", ()))
        shapes = [("profile.items", len(items), len(names["item_names"])),
                  ("profile.users", len(users), len(names["user_names"]))]
        if devices:
            shapes.append(("profile.affinity", len(items), len(devices)))
        for key, rows, columns in shapes:
            if key not in arrays:
                raise DataError(f"the saved state has no array {key!r}")
            if np.shape(arrays[key]) != (rows, columns):
                raise DataError(f"{key} is {np.shape(arrays[key])}, expected {(rows, columns)}")
        profile = Profile(np.asarray(arrays["profile.items"], np.float32),
                          tuple(names["item_names"][:]),
                          np.asarray(arrays["profile.users"], np.float32),
                          tuple(names["user_names"]), int(names["latest"]), devices,
                          np.asarray(arrays["profile.affinity"], np.float32) if devices
                          else np.zeros((0, 0), np.float32))
        order = tuple(int(j) for j in meta["order"])
        if sorted(order) != list(range(len(sources))):
            raise DataError(f"the saved order {list(order)} is not one of the "
                            f"{len(sources)} sources")
        echo = {int(j): int(k) for j, k in meta.get("echoes", ())}  # saved before: none
        if not set(echo) | set(echo.values()) <= set(order):
            raise DataError(f"the saved echoes {meta['echoes']} are not among the "
                            f"{len(sources)} sources")
        width = len(feature_names([s.tag for s in sources], profile,
                                  self._similar_to(sources) is not None))
        torch_module()
        network = build_network(width, self.config.ranker)
        load_network(network, arrays, "ranker.")
        if not 0 <= int(network.prior) < width:
            raise DataError(f"ranker.prior is {int(network.prior)}, not one of {width} inputs")
        network.eval()
        self._install(users, items, {"sources_": tuple(sources), "profile_": profile,
                                     "ranker_": network, "order_": order,
                                     "blend_": int(meta.get("blend", 1)),
                                     "echoes_": echo,
                                     "ranks_new_users_": bool(meta["ranks_new_users"]),
                                     "ranks_new_items_": bool(
                                         meta.get("ranks_new_items", True)),
                                     "ranks_without_device_": bool(
                                         meta.get("ranks_without_device", True)),
                                     "training_": dict(meta["training"]),
                                     "ratings_": self._restore_ratings(
                                         meta.get("ratings"), arrays, users, items, profile,
                                         histories)},
                      histories)
        return self

    def _restore_ratings(self, meta: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray],
                         users: Vocabulary, items: Vocabulary, profile: Profile,
                         histories: HistorySource | None) -> RatingHead | None:
        """The saved rating head, which the configuration must also have."""
        config = self.config.ratings
        if (meta is None) != (config is None):
            raise DataError("the saved hybrid's rating head does not match its configuration")
        if meta is None or config is None:
            return None
        sources = _restore_sources(meta["sources"], "rating-source", arrays, users, items,
                                   histories)
        width = len(rating_feature_names([s.tag for s in sources], profile))
        network = build_network(width, config)
        load_network(network, arrays, "rating-head.")
        network.eval()
        return RatingHead(tuple(sources), network, float(meta["low"]), float(meta["high"]))


def _sources_state(sources: Sequence[Source], prefix: str,
                   arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Each source's arrays added to ``arrays`` (named ``{prefix}{i}.``) and its JSON entry."""
    entries = []
    for i, source in enumerate(sources):
        own, meta = source.model.get_state()
        arrays |= {f"{prefix}{i}.{name}": value for name, value in own.items()}
        entries.append({"tag": source.tag, "depth": source.depth, "model": source.model.key(),
                        "config": source.model.config.model_dump(mode="json"), "state": meta})
    return entries


def _restore_sources(entries: Sequence[Mapping[str, Any]], prefix: str,
                     arrays: Mapping[str, np.ndarray], users: Vocabulary, items: Vocabulary,
                     histories: HistorySource | None) -> list[Source]:
    """The sources :func:`_sources_state` saved, each restored and checked by its own class."""
    from recengine.models.registry import model_class

    sources = []
    for i, entry in enumerate(entries):
        klass = model_class(entry["model"])
        own = {name[len(f"{prefix}{i}."):]: value for name, value in arrays.items()
               if name.startswith(f"{prefix}{i}.")}
        model = klass(klass.Config.model_validate(entry["config"]))
        sources.append(Source(entry["tag"], model.set_state(
            users, items, own, entry["state"], histories), int(entry["depth"])))
    return sources


def _per_device(lists: Lists, items: np.ndarray, wanted: sp.csr_array, n_items: int,
                profile: Profile, columns: slice, rng: np.random.Generator) -> Lists:
    """Each user's list as a request from one device, drawn at random among the devices of
    the user's held pairs and none: the same candidates, that device set in ``columns``
    (:func:`device_block`), labelled by the pairs chosen on it (``wanted``'s values are 1 + the
    device's position, 1 for none known); as a request without a device, every held pair.

    The ranker so learns what a user picks on each device, as a request asks from one, and
    what they pick in all, as a request that names no device asks; from as many lists as
    users (a list per device and user tripled the ranker's training time).
    """
    owner = np.repeat(np.arange(len(lists), dtype=np.int64), np.diff(wanted.indptr))
    n_codes = columns.stop - columns.start + 1
    code = wanted.data.astype(np.int64) - 1
    entry_keys = np.concatenate([owner * n_codes, (owner * n_codes + code)[code > 0]])
    entry_items = np.concatenate([wanted.indices, wanted.indices[code > 0]])
    keys = np.unique(entry_keys)
    last = np.r_[np.flatnonzero(np.diff(keys // n_codes)), len(keys) - 1]  # keys sort by user
    draw = np.lexsort((rng.random(len(keys)), keys // n_codes))  # each user's keys shuffled
    keys = np.sort(keys[draw[last]])  # one key a user
    entry_list = np.searchsorted(keys, entry_keys)
    kept = (entry_list < len(keys)) & (keys[np.minimum(entry_list, len(keys) - 1)] == entry_keys)
    entry_keys, entry_items, entry_list = entry_keys[kept], entry_items[kept], entry_list[kept]
    indptr, pick = take_ranges(lists.indptr, keys // n_codes)
    features = np.array(lists.features[pick])
    rows = np.repeat(np.arange(len(keys)), np.diff(indptr))
    features[:, columns] = device_block(profile, items[pick], (keys % n_codes)[rows])
    labels = np.isin(rows * n_items + items[pick], entry_list * n_items + entry_items)
    assert lists.users is not None  # made by Hybrid._lists, which names them
    return Lists(indptr, features, labels.astype(np.float32),
                 np.bincount(entry_list, minlength=len(keys)).astype(np.int64),
                 lists.users[keys // n_codes])


def _pair_keys(pairs: sp.csr_array, users: np.ndarray, n_items: int) -> np.ndarray:
    """``user × n_items + item`` of each stored pair of ``users`` in ``pairs``."""
    rows = pairs[users]
    return (np.repeat(users.astype(np.int64), np.diff(rows.indptr)) * n_items
            + rows.indices)


def _blocks(rows: np.ndarray, n_items: int) -> list[np.ndarray]:
    """``rows`` in blocks of at most :data:`_CELLS` scores (rows × items)."""
    size = max(1, _CELLS // max(n_items, 1))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _query_blocks(queries: Queries, n_items: int) -> Iterator[tuple[np.ndarray, Queries]]:
    """The positions of :func:`_blocks` of ``queries`` and their queries, one block at a
    time (the whole ``queries`` when one block holds them: no copy)."""
    for block in _blocks(np.arange(len(queries)), n_items):
        yield block, queries[block] if len(block) < len(queries) else queries


#: Most sources whose mean the ranker may start from (:func:`first_answer`'s ``blend``).
MAX_BLEND = 3

#: Fewest new users' lists in the validation carve on which the ranker must beat the sources'
#: first answer to be trusted with new users.
MIN_NEW_USER_LISTS = 30


def _ranks_new_users(network: Any, valid: Lists, history_column: int) -> bool:
    """Whether the ranker is :func:`clearly_better` than the sources' first answer on the
    validation lists of users with no history left (at least :data:`MIN_NEW_USER_LISTS` of
    them): where it cannot show it, new users keep the first answer (popularity, in their
    segment or overall)."""
    lists, heads = _heads(valid)
    new = lists[heads[:, history_column] == 0]
    return len(new) >= MIN_NEW_USER_LISTS and _earned(network, valid.take(new))


#: Fewest validation lists that found one of the carve's new items, on which the ranker must
#: beat the sources' first answer to order new items among themselves.
MIN_NEW_ITEM_LISTS = 30


def _ranks_new_items(network: Any, valid: Lists, unknown_column: int) -> bool:
    """Whether the ranker is :func:`clearly_better` than the sources' first answer at ordering
    the new items (no events in the carve) of each validation list among themselves, on at
    least :data:`MIN_NEW_ITEM_LISTS` lists that found one the user chose. A network judged
    on items with events need not order new ones better: where it cannot show it does, the
    first answer decides which new item takes each place the network gives new items
    (:func:`_handed_out`)."""
    new = _new_item_lists(valid, unknown_column)
    return len(new) >= MIN_NEW_ITEM_LISTS and _earned(network, new)


def _new_item_lists(lists: Lists, unknown_column: int) -> Lists:
    """Each of ``lists`` cut to its candidates flagged in ``unknown_column``, those that hold
    a chosen one (its ideal counts the chosen it holds: both orders are judged alike)."""
    cut = lists.kept(lists.features[:, unknown_column] > 0)
    chosen = np.bincount(cut.owners, weights=cut.labels, minlength=len(cut)).astype(np.int64)
    return replace(cut, n_relevant=chosen).take(np.flatnonzero(chosen > 0))


def _handed_out(scores: np.ndarray, by: np.ndarray, rows: np.ndarray,
               items: np.ndarray) -> np.ndarray:
    """Each row's ``scores`` handed out again in the order of ``by`` (highest first, ties to
    the lower item): the places stay, which candidate takes each follows ``by``.

    >>> _handed_out(np.array([3.0, 1.0, 2.0]), np.array([0.1, 0.9, 0.5]), np.zeros(3, int),
    ...             np.arange(3)).tolist()
    [1.0, 3.0, 2.0]
    """
    places = np.lexsort((-scores, rows))
    takers = np.lexsort((items, -by, rows))
    out = np.empty_like(scores)
    out[takers] = scores[places]
    return out


def _ranks_without_device(network: Any, valid: Lists, columns: slice) -> bool:
    """Whether the ranker is :func:`clearly_better` than the sources' first answer on the
    validation lists that name no device: requests without one keep the first answer unless
    it is (it learned mostly from lists that name one)."""
    lists, heads = _heads(valid)
    return _earned(network, valid.take(lists[~heads[:, columns].any(axis=1)]))


def _heads(valid: Lists) -> tuple[np.ndarray, np.ndarray]:
    """The lists that hold candidates, and the features of each one's first (the query's
    features are the same on every row of its list)."""
    lists = np.flatnonzero(np.diff(valid.indptr) > 0)
    return lists, valid.features[valid.indptr[lists]]


def _earned(network: Any, lists: Lists) -> bool:
    """Whether the ranker orders ``lists`` :func:`clearly_better` than their first answer
    (the last input column)."""
    return clearly_better(lists, ranker_scores(network, lists.features, "cpu"),
                          lists.features[:, -1])


def _groups(names: Sequence[str], first: str) -> list[tuple[str, np.ndarray]]:
    """The ranker's inputs in the groups an explanation names: each source's three (the first
    answer with source ``first``'s, whose score it mostly copies), the item's popularity, each
    item feature, the user's features, the user's activity and the request's time, and the
    likeness to recent items."""
    groups: dict[str, list[int]] = {}
    for column, name in enumerate(names):
        side, _, what = name.partition(":")
        if side == "first-answer":
            side, what = first, "score"
        if side == "item":
            label = what if "=" in what else "popularity"
        elif side == "user":
            label = "your profile"
        elif side == "device":
            label = "your device"
        elif what in ("score", "log-rank", "proposed"):
            label = f"{side}'s score"
        elif name.startswith("similarity"):
            label = "likeness to your recent items"
        else:
            label = "your activity"
        groups.setdefault(label, []).append(column)
    return [(label, np.array(columns)) for label, columns in groups.items()]

"""Train/test splits of the per-pair interaction table: seeded, deterministic, leak-free.

Splits work on pairs, not raw events, so that a (user, item) pair is never both trained on and
scored. Rows are put in a canonical order first, so the input's row order does not change a split.

- :func:`stratified`: each user's pairs split at random (the Microsoft Recommenders MovieLens
  protocol, 75/25): every user is in train and, with two or more pairs, in test.
- :func:`time_cutoff`: everything before a global time in train, after it in test (only users with
  training history are scored).
- :func:`leave_last_n`: each user's n most recent pairs are the test set.
- :func:`held_out_users`: strong generalisation: some users are absent from training; part of
  each one's history is *given* to the model at prediction time (fold-in), the rest is scored.
- :func:`cold_items` and :func:`cold_users`: whole items, or whole users with no history, held
  out: the cold-start protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recengine.errors import DataError

__all__ = ["SPLITS", "Split", "cold_items", "cold_users", "held_out_users", "leave_last_n",
           "make_split", "stratified", "time_cutoff"]


@dataclass(frozen=True)
class Split:
    """A train table, a test table, and for held-out users the history they give the model.

    ``candidates`` (item ids), when set, are the only items the protocol ranks (the cold items).
    """

    train: pd.DataFrame
    test: pd.DataFrame
    given: pd.DataFrame | None = None
    candidates: np.ndarray | None = None
    description: dict[str, object] = field(default_factory=dict)

    @property
    def test_users(self) -> np.ndarray:
        return pd.unique(self.test["user_id"])


def _canonical(interactions: pd.DataFrame) -> pd.DataFrame:
    if interactions.empty:
        raise DataError("no interactions to split")
    return interactions.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)


def _per_user_random_cut(frame: pd.DataFrame, fraction: float,
                         rng: np.random.Generator) -> np.ndarray:
    """A mask choosing ``round(n * fraction)`` random pairs of each user, leaving at least one."""
    key = rng.random(len(frame))
    rank = pd.Series(key).groupby(frame["user_id"].to_numpy()).rank(method="first").to_numpy()
    n = frame.groupby("user_id")["item_id"].transform("size").to_numpy()
    take = np.minimum(np.rint(n * fraction), n - 1)
    return rank <= take


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise DataError(f"{name} must be between 0 and 1, got {value}", column=name)


def stratified(interactions: pd.DataFrame, test_fraction: float = 0.25, *,
               seed: int = 0) -> Split:
    """Each user's pairs split at random, ``test_fraction`` of them (rounded) to test."""
    _check_fraction("test_fraction", test_fraction)
    frame = _canonical(interactions)
    test = _per_user_random_cut(frame, test_fraction, np.random.default_rng(seed))
    return Split(frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True),
                 description={"split": "stratified", "test_fraction": test_fraction,
                              "seed": seed})


def _require_time(frame: pd.DataFrame, split: str) -> None:
    if frame["timestamp"].isna().any():
        raise DataError(f"the {split} split needs a timestamp on every event; this dataset has "
                        "events without one (use --split stratified or users)",
                        column="timestamp")


def time_cutoff(interactions: pd.DataFrame, test_fraction: float = 0.2, *,
                cutoff: pd.Timestamp | str | None = None) -> Split:
    """Pairs last seen before ``cutoff`` train, the rest test (users with no training pair dropped).

    Without a cutoff, it is the time that leaves ``test_fraction`` of the pairs after it.
    """
    frame = _canonical(interactions)
    _require_time(frame, "time")
    if cutoff is None:
        _check_fraction("test_fraction", test_fraction)
        cut = frame["timestamp"].quantile(1 - test_fraction)
    else:
        cut = pd.Timestamp(cutoff)
    train = frame[frame["timestamp"] < cut]
    test = frame[(frame["timestamp"] >= cut) & frame["user_id"].isin(train["user_id"])]
    if train.empty or test.empty:
        raise DataError(f"cutoff {cut} leaves an empty train or test set", column="cutoff")
    dropped = int(((frame["timestamp"] >= cut) & ~frame["user_id"].isin(train["user_id"])).sum())
    return Split(train.reset_index(drop=True), test.reset_index(drop=True),
                 description={"split": "time", "cutoff": str(cut),
                              "test_pairs_of_new_users_dropped": dropped})


def leave_last_n(interactions: pd.DataFrame, n: int = 1) -> Split:
    """Each user's ``n`` most recent pairs (ties broken by item id) to test, if more remain."""
    if n < 1:
        raise DataError(f"n must be at least 1, got {n}", column="n")
    frame = _canonical(interactions)
    _require_time(frame, "leave-last-n")
    ordered = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    from_end = ordered.groupby("user_id").cumcount(ascending=False)
    size = ordered.groupby("user_id")["item_id"].transform("size")
    test = (from_end < n) & (size > n)
    return Split(ordered[~test].reset_index(drop=True), ordered[test].reset_index(drop=True),
                 description={"split": "last", "n": n})


def held_out_users(interactions: pd.DataFrame, user_fraction: float = 0.1,
                   given_fraction: float = 0.5, *, seed: int = 0) -> Split:
    """Hold out ``user_fraction`` of the users (with 2+ pairs) entirely from training.

    Of each held-out user's pairs, ``given_fraction`` (at least one) are given to the model as
    history and the rest are scored.
    """
    _check_fraction("user_fraction", user_fraction)
    _check_fraction("given_fraction", given_fraction)
    frame = _canonical(interactions)
    rng = np.random.default_rng(seed)
    sizes = frame.groupby("user_id").size()
    eligible = sizes.index[sizes >= 2].to_numpy()
    n_held = max(1, round(len(sizes) * user_fraction))
    if len(eligible) < n_held or len(sizes) - n_held < 1:
        raise DataError("too few users with two or more interactions to hold out",
                        column="user_fraction")
    held = rng.choice(eligible, size=n_held, replace=False)
    is_held = frame["user_id"].isin(held).to_numpy()
    theirs = frame[is_held].reset_index(drop=True)
    scored = _per_user_random_cut(theirs, 1 - given_fraction, rng)
    return Split(frame[~is_held].reset_index(drop=True), theirs[scored].reset_index(drop=True),
                 given=theirs[~scored].reset_index(drop=True),
                 description={"split": "users", "user_fraction": user_fraction,
                              "given_fraction": given_fraction, "seed": seed})


def _hold_out_whole(frame: pd.DataFrame, column: str, fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded ``fraction`` of the distinct ``column`` values, and the mask of their rows."""
    values = np.sort(frame[column].unique())
    size = max(1, round(len(values) * fraction))
    held = np.sort(np.random.default_rng(seed).choice(values, size=size, replace=False))
    return held, frame[column].isin(held).to_numpy()


def cold_items(interactions: pd.DataFrame, item_fraction: float = 0.2, *,
               seed: int = 0) -> Split:
    """Hold whole items out: every pair of a held-out item is a test pair (new-item protocol).

    Test pairs of users with no training pair are dropped (nothing to profile them by).
    """
    _check_fraction("item_fraction", item_fraction)
    frame = _canonical(interactions)
    held, is_held = _hold_out_whole(frame, "item_id", item_fraction, seed)
    train = frame[~is_held]
    test = frame[is_held & frame["user_id"].isin(train["user_id"]).to_numpy()]
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), candidates=held,
                 description={"split": "cold-items", "item_fraction": item_fraction,
                              "seed": seed, "cold_items": len(held)})


def cold_users(interactions: pd.DataFrame, user_fraction: float = 0.2, *,
               seed: int = 0) -> Split:
    """Hold whole users out with no history at all (new-user protocol): all their pairs are test.

    They stay known by their metadata (see ``TrainingData.from_interactions(extra_users=)``).
    """
    _check_fraction("user_fraction", user_fraction)
    frame = _canonical(interactions)
    _, is_held = _hold_out_whole(frame, "user_id", user_fraction, seed)
    return Split(frame[~is_held].reset_index(drop=True), frame[is_held].reset_index(drop=True),
                 description={"split": "cold-users", "user_fraction": user_fraction,
                              "seed": seed})


SPLITS = ("stratified", "time", "last", "users", "cold-items", "cold-users")


def make_split(interactions: pd.DataFrame, name: str, *, test_fraction: float = 0.25,
               seed: int = 0, last_n: int = 1) -> Split:
    """The split named on the command line."""
    if name == "stratified":
        return stratified(interactions, test_fraction, seed=seed)
    if name == "time":
        return time_cutoff(interactions, test_fraction)
    if name == "last":
        return leave_last_n(interactions, last_n)
    if name == "users":
        return held_out_users(interactions, test_fraction, seed=seed)
    if name == "cold-items":
        return cold_items(interactions, test_fraction, seed=seed)
    if name == "cold-users":
        return cold_users(interactions, test_fraction, seed=seed)
    raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}", column="--split")

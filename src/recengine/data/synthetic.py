"""Synthetic vacation-rental event logs with real structure, for the demo, the tests and benchmarks.

Why synthetic data: a real log cannot ship with the package, and it hides its truth. Here the truth
is known (:func:`generate_with_truth` returns it), so a test can check that a model finds what was
put in, and the demo runs anywhere in about a second.

The generative story, in order:

1. **Catalogue.** Each rental lies in one of eight named regions. Each region has its own centre
   (latitude, longitude), price level, mix of property types and typical amenities: fireplaces and
   ski-in in Alpine Lakes, pools and beach access on the Sunny Coast. Bedrooms follow the property
   type. The nightly price follows bedrooms, region, type and premium amenities, plus noise. Title
   and description are written from these features, so text models see them too.
2. **Travellers.** Each user belongs to a segment (family, couple, solo, friends). The segment sets
   a group size (hence the bedrooms needed), a budget, an age band, and leanings towards property
   types and amenities. The home country leans a user towards nearby regions. Every preference
   also has personal noise. Only segment, age band and home country are published; the rest stays
   hidden, as it does in real life.
3. **Latent factors.** A fixed random projection maps an item's one-hot region, type and amenities,
   and a user's preferences over the same labels, into ``n_taste_factors`` dimensions. Half the
   variance of each factor comes from this projection, half is noise the features cannot explain.
   So content-based models have signal, and collaborative ones have more that only co-occurrence
   reveals.
4. **Choice.** Utility = latent dot product + region and type preference + amenities liked + budget
   fit (over budget hurts much more than under) + enough bedrooms + a hidden item quality. A user
   draws items without replacement with probability ∝ popularity × exp(utility / temperature)
   (Gumbel top-k). Base popularity is lognormal, so a few listings get much of the traffic. The
   number of items per user is lognormal too (at least 3), so a few users are prolific.
5. **Trips.** Stays come in order, and one trip leads to the next. A fixed grand tour runs through
   the regions in turn, each region's listings west to east; a listing's ``onward`` listings are
   the 4 most popular of the next 12 along it, mostly nearby in the same region; the links run
   one way. After each stay the traveller, with probability ``sequence_strength``, follows on:
   the next stay is the onward listing, not yet stayed at, that they would choose first (the
   Gumbel keys of step 4), if it is plausible for them: its key is at most 3 below that of their
   weakest step-4 pick, so taste and budget still rule. Otherwise, or when no onward listing
   qualifies, the next stay is one of the step-4 picks not yet used, at random. So the same
   listing → next-listing moves recur across travellers, and a first-order Markov model can
   learn them; at 0 the order is random.
6. **Events.** Each user is active over a sub-period of the window. Each chosen listing gets one or
   more visits (a ``view``, or a ``dwell`` in seconds, longer when utility is higher) and maybe a
   ``watch`` of the video tour (fraction watched, higher when utility is higher). With probability
   rising with utility come an ``add-to-cart``, a ``booking`` (value: price × nights) and, after
   the stay, a 1–5 ``rating`` tied to utility. Events come in that order, one second apart at
   least, so no two events of a user, item and type share a timestamp. A user's first touches of
   their listings follow the order of step 5, strictly (later returns, bookings and ratings may
   interleave). Events that would fall after the window's end are cut, as a real export cuts
   them: a late booking has no rating yet.
7. **Devices.** Each listing a traveller considers is looked at on one device, ``mobile`` or
   ``desktop`` (all of that pair's events). Travellers lean one way or the other (a normal
   draw on the logit scale), and cheaper listings are looked at on phones more: the logit of
   mobile falls by ``device_strength`` per standard deviation of log price. So the device a
   request comes from says something about the listing sought; at 0 it says nothing.

Everything comes from ``np.random.default_rng(seed)`` (the devices from a generator of their own,
so that they leave every other draw as it was): the same arguments give the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recengine.data.dataset import Dataset
from recengine.data.schema import EVENT_COLUMNS, FeatureKind
from recengine.errors import DataError

__all__ = [
    "AMENITIES",
    "DEVICES",
    "PROPERTY_TYPES",
    "REGIONS",
    "SyntheticConfig",
    "SyntheticTruth",
    "generate",
    "generate_with_truth",
]

DAY = 86_400  # seconds


class Region(NamedTuple):
    """A holiday region: where it is, how dear, and what its rentals tend to be and have."""

    name: str
    share: float  # relative size of its catalogue
    centre: tuple[float, float]  # latitude, longitude
    price: float  # multiplier of the nightly price
    types: dict[str, float]  # relative odds of property types; unlisted types get _RARE_TYPE
    amenities: dict[str, float]  # amenity probabilities that differ from _AMENITY_RATE


class PropertyType(NamedTuple):
    name: str
    bedrooms: float  # mean number of bedrooms
    price: float  # multiplier of the nightly price


class _Segment(NamedTuple):
    name: str
    share: float
    group: tuple[int, float]  # smallest group, Poisson mean of extra people
    per_bedroom: float  # people sharing a bedroom
    budget: float  # median nightly budget
    types: dict[str, float]  # preference boost per property type
    amenities: dict[str, float]  # preference boost per amenity
    ages: tuple[float, ...]  # share of each of AGE_BANDS


class _Country(NamedTuple):
    code: str
    share: float
    regions: dict[str, float]  # preference boost per nearby region


REGIONS: tuple[Region, ...] = (
    Region("Alpine Lakes", 1.3, (46.6, 8.0), 1.35, {"chalet": 4, "cabin": 3, "apartment": 2},
           {"fireplace": 0.6, "ski-in": 0.35, "hot tub": 0.35, "air conditioning": 0.05}),
    Region("Sunny Coast", 1.5, (36.6, -4.6), 1.1, {"apartment": 3, "condo": 3, "villa": 2},
           {"pool": 0.45, "beach access": 0.5, "air conditioning": 0.8, "fireplace": 0.02}),
    Region("Old Town", 1.0, (48.2, 16.4), 1.0, {"apartment": 5, "loft": 3},
           {"parking": 0.25, "air conditioning": 0.4, "pool": 0.02}),
    Region("Northern Forest", 0.8, (61.5, 24.5), 0.8, {"cabin": 5, "cottage": 2},
           {"fireplace": 0.7, "pets allowed": 0.5, "hot tub": 0.25, "air conditioning": 0.02}),
    Region("Island Bay", 1.0, (37.1, 25.4), 1.25, {"villa": 4, "house": 2, "apartment": 2},
           {"pool": 0.5, "beach access": 0.6, "air conditioning": 0.7}),
    Region("Wine Valley", 0.9, (44.9, -0.3), 1.05, {"cottage": 3, "house": 3, "villa": 2},
           {"pool": 0.4, "pets allowed": 0.4, "fireplace": 0.3}),
    Region("Highlands", 0.8, (57.2, -4.8), 0.85, {"cottage": 4, "cabin": 3, "house": 2},
           {"fireplace": 0.65, "pets allowed": 0.55, "air conditioning": 0.02}),
    Region("Desert Springs", 0.7, (33.8, -116.5), 1.15, {"house": 3, "villa": 3, "condo": 2},
           {"pool": 0.7, "hot tub": 0.5, "air conditioning": 0.95, "fireplace": 0.05}),
)

PROPERTY_TYPES: tuple[PropertyType, ...] = (
    PropertyType("apartment", 1.6, 0.9), PropertyType("loft", 1.5, 1.05),
    PropertyType("condo", 2.0, 0.95), PropertyType("cabin", 2.0, 0.85),
    PropertyType("cottage", 2.4, 0.95), PropertyType("house", 3.2, 1.0),
    PropertyType("chalet", 3.8, 1.3), PropertyType("villa", 4.2, 1.6),
)

#: Amenities, the most common first; descriptions name the rarest a listing has.
AMENITIES: tuple[str, ...] = (
    "wifi", "kitchen", "parking", "air conditioning", "pets allowed", "fireplace", "hot tub",
    "pool", "beach access", "ski-in",
)
_AMENITY_RATE = {"wifi": 0.9, "kitchen": 0.8, "parking": 0.5, "air conditioning": 0.3,
                 "pets allowed": 0.25, "fireplace": 0.15, "hot tub": 0.1, "pool": 0.1,
                 "beach access": 0.0, "ski-in": 0.0}
_AMENITY_PREMIUM = {"fireplace": 0.04, "hot tub": 0.08, "pool": 0.15, "beach access": 0.15,
                    "ski-in": 0.2}
_RARE_TYPE = 0.3
_BASE_PRICE = 55.0  # one bedroom, average region and type

AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
SEGMENTS: tuple[_Segment, ...] = (
    _Segment("family", 0.35, (3, 1.0), 2.0, 190.0,
             {"house": 1.0, "villa": 0.8, "cottage": 0.5, "loft": -1.0},
             {"pool": 1.0, "kitchen": 0.8, "parking": 0.6},
             (0.02, 0.15, 0.4, 0.3, 0.1, 0.03)),
    _Segment("couple", 0.30, (2, 0.1), 2.0, 140.0,
             {"cottage": 0.8, "cabin": 0.7, "loft": 0.6, "apartment": 0.3},
             {"hot tub": 1.0, "fireplace": 0.8, "wifi": 0.3},
             (0.1, 0.3, 0.2, 0.15, 0.15, 0.1)),
    _Segment("solo", 0.15, (1, 0.15), 2.0, 85.0,
             {"apartment": 1.0, "loft": 0.8, "condo": 0.5, "villa": -1.0},
             {"wifi": 1.2, "air conditioning": 0.3},
             (0.25, 0.35, 0.15, 0.1, 0.1, 0.05)),
    _Segment("friends", 0.20, (3, 1.8), 1.5, 240.0,
             {"villa": 1.0, "house": 0.8, "chalet": 0.8},
             {"pool": 0.8, "hot tub": 0.8, "ski-in": 0.5},
             (0.3, 0.45, 0.15, 0.06, 0.03, 0.01)),
)
COUNTRIES: tuple[_Country, ...] = (
    _Country("DE", 0.20, {"Alpine Lakes": 0.8, "Northern Forest": 0.3}),
    _Country("GB", 0.18, {"Highlands": 0.8, "Sunny Coast": 0.5}),
    _Country("US", 0.15, {"Desert Springs": 1.2}),
    _Country("FR", 0.12, {"Wine Valley": 0.9, "Alpine Lakes": 0.3}),
    _Country("NL", 0.08, {"Sunny Coast": 0.4, "Old Town": 0.3}),
    _Country("IT", 0.07, {"Island Bay": 0.5, "Alpine Lakes": 0.4}),
    _Country("ES", 0.06, {"Sunny Coast": 0.7}),
    _Country("SE", 0.05, {"Northern Forest": 0.9}),
    _Country("PL", 0.05, {"Old Town": 0.6}),
    _Country("GR", 0.04, {"Island Bay": 0.9}),
)


class _Weights(NamedTuple):
    """Weights of the utility terms; each term is of order one."""

    latent: float = 1.0
    region: float = 1.0
    type: float = 0.7
    amenity: float = 0.4
    quality: float = 0.5
    over_budget: float = 3.0  # per squared log-ratio of price to budget
    under_budget: float = 0.3
    short_bedroom: float = 1.2  # per bedroom missing
    extra_bedroom: float = 0.15  # per bedroom too many


_WEIGHTS = _Weights()
#: Share of each latent factor's variance explained by the features.
_CONTENT_SHARE = 0.5
#: Events per chosen item on average (visits, watch, cart, booking, rating), to turn
#: ``mean_events_per_user`` into a number of items per user.
_EVENTS_PER_PAIR = 1.95
#: Utility cells computed at once in the choice step: bounds memory at a few tens of MB.
_BLOCK_CELLS = 1 << 21
#: Onward listings per listing: few, so the same moves recur across many travellers; they are
#: the most popular of the next ``_AHEAD`` listings along the tour.
_ONWARD = 4
_AHEAD = 12
#: How far below a user's weakest pick an onward listing's Gumbel key may fall and still be
#: followed: 3 is a factor e³ ≈ 20 in choice weight, so a traveller follows on only to places
#: that nearly made their own list, and stays keep the fit to taste and budget of step 4.
_PLAUSIBLE = 3.0
EVENT_TYPES = ("view", "dwell", "watch", "add-to-cart", "booking", "rating")
#: The devices listings are looked at on (step 7).
DEVICES = ("mobile", "desktop")
_VIEW, _DWELL, _WATCH, _CART, _BOOKING, _RATING = range(len(EVENT_TYPES))

ITEM_FEATURES: dict[str, FeatureKind] = {
    "title": FeatureKind.TEXT, "description": FeatureKind.TEXT,
    "region": FeatureKind.CATEGORICAL, "property_type": FeatureKind.CATEGORICAL,
    "bedrooms": FeatureKind.NUMERIC, "price_per_night": FeatureKind.NUMERIC,
    "amenities": FeatureKind.MULTI, "latitude": FeatureKind.NUMERIC,
    "longitude": FeatureKind.NUMERIC, "listed_date": FeatureKind.DATE,
}
USER_FEATURES: dict[str, FeatureKind] = {
    "segment": FeatureKind.CATEGORICAL, "age_band": FeatureKind.CATEGORICAL,
    "home_country": FeatureKind.CATEGORICAL,
}


class SyntheticConfig(BaseModel):
    """Sizes, window and knobs of a synthetic log; the last four shape its statistics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_users: int = Field(2000, ge=1)
    n_items: int = Field(800, ge=3, description="At least 3: every user has 3 items or more.")
    seed: int = Field(0, ge=0)
    mean_events_per_user: float = Field(40.0, gt=0, description="Approximate, before the floor "
                                        "of 3 items per user and the cut at the window's end.")
    start: str = "2025-01-01"
    days: int = Field(365, ge=1)
    n_taste_factors: int = Field(8, ge=1)
    temperature: float = Field(1.0, gt=0, description="Higher: choices follow utility less.")
    popularity_sigma: float = Field(1.5, ge=0, description="Spread of log base popularity.")
    activity_sigma: float = Field(1.0, ge=0, description="Spread of log items per user.")
    sequence_strength: float = Field(0.5, ge=0, le=1, description="Chance that a stay follows "
                                     "on from the previous one; 0: stays in random order.")
    device_strength: float = Field(1.0, ge=0, description="How much cheaper listings lean to "
                                   "mobile (logit per standard deviation of log price); 0: the "
                                   "device says nothing about the listing.")


@dataclass(frozen=True)
class SyntheticTruth:
    """What generated the log, hidden from models: for tests and benchmarks.

    Rows of the factor matrices follow ``dataset.users.index`` and ``dataset.items.index``.
    ``tastes`` holds each user's hidden preferences; ``popularity`` each item's base share of
    attention; ``pairs`` every chosen (user, item) with its utility, standardised over the pairs,
    and its ``step`` in the user's order of stays (0 first); ``onward`` each item's onward
    listings, one per column.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    tastes: pd.DataFrame
    popularity: pd.Series
    pairs: pd.DataFrame
    onward: pd.DataFrame


@dataclass(frozen=True)
class _Items:
    region: np.ndarray  # codes into REGIONS
    kind: np.ndarray  # codes into PROPERTY_TYPES
    bedrooms: np.ndarray
    amenities: np.ndarray  # bool, (n, len(AMENITIES))
    price: np.ndarray
    quality: np.ndarray
    log_popularity: np.ndarray
    labels: np.ndarray  # one-hot region, one-hot type, amenities: (n, n_labels)
    factors: np.ndarray
    coords: np.ndarray  # latitude, longitude: (n, 2)


@dataclass(frozen=True)
class _Users:
    segment: np.ndarray  # codes into SEGMENTS
    age: np.ndarray  # codes into AGE_BANDS
    country: np.ndarray  # codes into COUNTRIES
    group_size: np.ndarray
    bedrooms_needed: np.ndarray
    budget: np.ndarray
    region_pref: np.ndarray  # log-probabilities, (n, len(REGIONS))
    type_pref: np.ndarray  # log-probabilities, (n, len(PROPERTY_TYPES))
    amenity_pref: np.ndarray  # (n, len(AMENITIES))
    factors: np.ndarray


def generate(n_users: int = 2000, n_items: int = 800, *, seed: int = 0,
             mean_events_per_user: float = 40.0, start: str = "2025-01-01", days: int = 365,
             n_taste_factors: int = 8, sequence_strength: float = 0.5,
             device_strength: float = 1.0) -> Dataset:
    """A synthetic vacation-rental event log: events, listings and travellers.

    Examples
    --------
    >>> data = generate(n_users=50, n_items=40, seed=1)
    >>> data.name, len(data.users), len(data.items)
    ('synthetic', 50, 40)
    >>> sorted(data.events["event_type"].unique())[:3]
    ['add-to-cart', 'booking', 'dwell']
    """
    return generate_with_truth(n_users=n_users, n_items=n_items, seed=seed,
                               mean_events_per_user=mean_events_per_user, start=start,
                               days=days, n_taste_factors=n_taste_factors,
                               sequence_strength=sequence_strength,
                               device_strength=device_strength)[0]


def generate_with_truth(config: SyntheticConfig | None = None,
                        **params: Any) -> tuple[Dataset, SyntheticTruth]:
    """The log of :func:`generate`, and the hidden truth behind it.

    Pass a :class:`SyntheticConfig` or its fields as keywords, not both.
    """
    cfg = _config(config, params)
    origin, span = _window(cfg)
    rng = np.random.default_rng(cfg.seed)
    n_labels = len(REGIONS) + len(PROPERTY_TYPES) + len(AMENITIES)
    projection = rng.normal(size=(n_labels, cfg.n_taste_factors))
    items = _draw_items(rng, cfg.n_items, cfg.popularity_sigma, projection)
    users = _draw_users(rng, cfg.n_users, projection)
    n_pairs = _items_per_user(rng, cfg)
    onward = _onward(items)
    user, item, step, utility = _choose(rng, users, items, n_pairs, onward, cfg.temperature,
                                        cfg.sequence_strength)
    z = _standardise(utility)
    u, i, code, value, seconds = _events(rng, (user, item, step), z, items.price, cfg.n_users,
                                         span)
    user_ids, item_ids = _ids("u", cfg.n_users), _ids("i", cfg.n_items)
    device = _devices(np.random.default_rng([cfg.seed, 7]), u, i, items.price,
                      cfg.device_strength)
    dataset = Dataset(
        name="synthetic",
        events=_events_frame((user_ids, u), (item_ids, i), code, value, seconds, origin,
                             device),
        items=_items_frame(rng, items, item_ids, origin),
        users=_users_frame(users, user_ids),
        item_features=dict(ITEM_FEATURES),
        user_features=dict(USER_FEATURES),
    )
    return dataset, _truth(users, items, (user_ids, item_ids), (user, item, step, z), onward)


# -- parameters -----------------------------------------------------------------------------
def _config(config: SyntheticConfig | None, params: dict[str, Any]) -> SyntheticConfig:
    if config is not None and params:
        raise TypeError("pass either a config or keyword parameters, not both")
    if config is not None:
        return config
    try:
        return SyntheticConfig(**params)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise DataError(f"invalid synthetic parameter: {first['msg']}", column=field) from None


def _window(cfg: SyntheticConfig) -> tuple[np.datetime64, int]:
    """The window's start (naive UTC, seconds) and length in seconds; it must lie in the past."""
    try:
        origin = pd.Timestamp(cfg.start)
    except (ValueError, TypeError):
        origin = pd.NaT
    if pd.isna(origin):
        raise DataError(f"start {cfg.start!r} is not a date; use ISO 8601 such as 2025-01-01",
                        column="start")
    if origin.tzinfo is not None:
        origin = origin.tz_convert("UTC").tz_localize(None)
    origin = origin.floor("s")
    end = origin + pd.Timedelta(days=cfg.days)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    if end > now:
        raise DataError(f"the window {origin} + {cfg.days} days ends in the future ({end}); "
                        "pass an earlier start or fewer days", column="start")
    return origin.to_datetime64().astype("datetime64[s]"), cfg.days * DAY


# -- catalogue and travellers ---------------------------------------------------------------
def _draw_items(rng: np.random.Generator, n: int, popularity_sigma: float,
                projection: np.ndarray) -> _Items:
    shares = np.array([r.share for r in REGIONS])
    region = rng.choice(len(REGIONS), size=n, p=shares / shares.sum())
    odds = np.array([[r.types.get(t.name, _RARE_TYPE) for t in PROPERTY_TYPES] for r in REGIONS])
    kind = _draw_rows(rng, (odds / odds.sum(axis=1, keepdims=True))[region])
    mean_bedrooms = np.array([t.bedrooms for t in PROPERTY_TYPES])
    bedrooms = np.clip(np.rint(mean_bedrooms[kind] + rng.normal(0, 0.8, n)), 1, 6).astype(int)
    rates = np.array([[r.amenities.get(a, _AMENITY_RATE[a]) for a in AMENITIES] for r in REGIONS])
    amenities = rng.random((n, len(AMENITIES))) < rates[region]
    price = _prices(rng, region, kind, bedrooms, amenities)
    quality = rng.normal(size=n)
    log_popularity = popularity_sigma * (0.5 * quality + np.sqrt(0.75) * rng.normal(size=n))
    labels = np.zeros((n, projection.shape[0]))
    labels[np.arange(n), region] = 1.0
    labels[np.arange(n), len(REGIONS) + kind] = 1.0
    labels[:, len(REGIONS) + len(PROPERTY_TYPES):] = amenities
    centre = np.array([r.centre for r in REGIONS])[region]
    coords = centre + rng.normal(0, 1, (n, 2)) * np.array([0.3, 0.45])
    return _Items(region, kind, bedrooms, amenities, price, quality, log_popularity, labels,
                  _embed(rng, labels, projection), coords)


def _prices(rng: np.random.Generator, region: np.ndarray, kind: np.ndarray,
            bedrooms: np.ndarray, amenities: np.ndarray) -> np.ndarray:
    """Nightly price: bedrooms × region × type × premium amenities × lognormal noise."""
    region_factor = np.array([r.price for r in REGIONS])[region]
    type_factor = np.array([t.price for t in PROPERTY_TYPES])[kind]
    premium = amenities @ np.array([_AMENITY_PREMIUM.get(a, 0.0) for a in AMENITIES])
    noise = rng.lognormal(0.0, 0.2, len(region))
    price = _BASE_PRICE * (1 + 0.4 * (bedrooms - 1)) * region_factor * type_factor
    return np.rint(price * (1 + premium) * noise).clip(min=20.0)


def _draw_users(rng: np.random.Generator, n: int, projection: np.ndarray) -> _Users:
    shares = np.array([s.share for s in SEGMENTS])
    segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum())
    age = _draw_rows(rng, np.array([s.ages for s in SEGMENTS])[segment])
    country_shares = np.array([c.share for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=country_shares / country_shares.sum())
    smallest = np.array([s.group[0] for s in SEGMENTS])[segment]
    group = smallest + rng.poisson(np.array([s.group[1] for s in SEGMENTS])[segment])
    per_bedroom = np.array([s.per_bedroom for s in SEGMENTS])[segment]
    needed = np.clip(np.ceil(group / per_bedroom), 1, 6).astype(int)
    budget = np.array([s.budget for s in SEGMENTS])[segment] * rng.lognormal(0.0, 0.4, n)
    region_boost = _boosts(COUNTRIES, "regions", [r.name for r in REGIONS])[country]
    region_pref = _log_softmax(rng.normal(0, 1.2, (n, len(REGIONS))) + region_boost)
    type_boost = _boosts(SEGMENTS, "types", [t.name for t in PROPERTY_TYPES])[segment]
    type_pref = _log_softmax(rng.normal(0, 0.7, (n, len(PROPERTY_TYPES))) + type_boost)
    amenity_pref = rng.normal(0, 0.5, (n, len(AMENITIES)))
    amenity_pref += _boosts(SEGMENTS, "amenities", list(AMENITIES))[segment]
    amenity_pref[:, AMENITIES.index("pets allowed")] += 2.0 * (rng.random(n) < 0.2)  # pet owners
    taste = np.hstack([region_pref - region_pref.mean(axis=1, keepdims=True),
                       type_pref - type_pref.mean(axis=1, keepdims=True), amenity_pref])
    return _Users(segment, age, country, group, needed, budget, region_pref, type_pref,
                  amenity_pref, _embed(rng, taste, projection))


def _boosts(groups: tuple[Any, ...], field: str, labels: list[str]) -> np.ndarray:
    """A (group, label) matrix of the boosts each group's ``field`` dict gives its labels."""
    return np.array([[getattr(g, field).get(label, 0.0) for label in labels] for g in groups])


def _embed(rng: np.random.Generator, labels: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Latent factors: the projected labels, standardised, mixed with as much pure noise."""
    content = (labels - labels.mean(axis=0)) @ projection
    scale = content.std(axis=0)
    content /= np.where(scale > 0, scale, 1.0)
    noise = rng.normal(size=content.shape)
    return np.sqrt(_CONTENT_SHARE) * content + np.sqrt(1 - _CONTENT_SHARE) * noise


def _onward(items: _Items) -> np.ndarray:
    """Each listing's onward listings, (n, _ONWARD): well-known stops just ahead on a grand tour.

    The tour visits the regions in the order of ``REGIONS``, each region's listings west to east,
    and wraps round. Of the ``_AHEAD`` listings after a listing, its onward ones are the most
    popular: travellers head on to places they have heard of, so following on keeps traffic as
    concentrated as free choice does. Onward listings are near, and in the same region but at
    its east end; the links run one way, forward along the tour.
    """
    n = len(items.region)
    tour = np.lexsort((items.coords[:, 1], items.region))
    place = np.empty(n, dtype=np.int64)
    place[tour] = np.arange(n)
    ahead = tour[(place[:, None] + np.arange(1, min(_AHEAD, n - 1) + 1)) % n]
    best = np.argsort(-items.log_popularity[ahead], axis=1, kind="stable")
    return np.take_along_axis(ahead, best[:, :_ONWARD], axis=1)


def _items_per_user(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Lognormal activity: a few prolific users; at least 3, at most half the catalogue."""
    mean = cfg.mean_events_per_user / _EVENTS_PER_PAIR
    mu = np.log(mean) - cfg.activity_sigma**2 / 2
    drawn = np.rint(rng.lognormal(mu, cfg.activity_sigma, cfg.n_users))
    cap = min(cfg.n_items, max(3, cfg.n_items // 2))
    return np.clip(drawn, 3, cap).astype(np.int64)


# -- choice -----------------------------------------------------------------------------------
def _linear_terms(users: _Users, items: _Items) -> tuple[np.ndarray, np.ndarray]:
    """User and item matrices whose product is every utility term but the budget fit.

    Latent dot product, region and type log-preference, amenities liked, bedrooms (too few or
    too many) and item quality are each linear in the item's factors or one-hot labels, so one
    matrix product gives their sum for a whole block of users.
    """
    w = _WEIGHTS
    n_regions, n_types = len(REGIONS), len(PROPERTY_TYPES)
    spare = np.arange(1, 7) - users.bedrooms_needed[:, None]
    bedroom_fit = -(w.short_bedroom * np.maximum(-spare, 0)
                    + w.extra_bedroom * np.maximum(spare, 0))
    user_side = np.hstack([
        users.factors * (w.latent / np.sqrt(users.factors.shape[1])),
        w.region * users.region_pref, w.type * users.type_pref, w.amenity * users.amenity_pref,
        bedroom_fit, np.ones((len(spare), 1)),
    ])
    item_side = np.hstack([
        items.factors, items.labels[:, :n_regions], items.labels[:, n_regions:n_regions + n_types],
        items.amenities, np.eye(6)[items.bedrooms - 1], w.quality * items.quality[:, None],
    ])
    return user_side.astype(np.float32), item_side.T.astype(np.float32)


def _utility(user_side: np.ndarray, item_side: np.ndarray, log_budget: np.ndarray,
             log_price: np.ndarray) -> np.ndarray:
    """Utility of every item for a block of users: the linear terms, minus the budget misfit."""
    util = user_side @ item_side
    ratio = log_price - log_budget[:, None]
    over = np.maximum(ratio, 0)
    under = ratio - over
    util -= _WEIGHTS.over_budget * over * over + _WEIGHTS.under_budget * under * under
    return util


def _choose(rng: np.random.Generator, users: _Users, items: _Items, n_pairs: np.ndarray,
            onward: np.ndarray, temperature: float,
            strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ``n_pairs`` stays as (user, item, step, utility), sorted by user and step.

    The picks are drawn without replacement ∝ popularity × exp(U / T) by Gumbel top-k: the ``n``
    largest of ``log p_i + G_i`` (``G = -log E``, ``E`` standard exponential) are a draw of ``n``
    items without replacement with probabilities ∝ ``p``. :func:`_walk` then puts them in order,
    following onward links with probability ``strength``. Users go in blocks of similar activity,
    so each block partitions only as deep as its busiest user needs. Float32 throughout: this is
    the hot loop.
    """
    n_items = len(items.price)
    user_side, item_side = _linear_terms(users, items)
    log_budget = np.log(users.budget).astype(np.float32)
    log_price = np.log(items.price).astype(np.float32)
    log_popularity = items.log_popularity.astype(np.float32)
    order = np.argsort(n_pairs, kind="stable")
    size = max(1, _BLOCK_CELLS // n_items)
    users_out, items_out, steps_out, utils_out = [], [], [], []
    for begin in range(0, len(order), size):
        rows = order[begin:begin + size]
        util = _utility(user_side[rows], item_side, log_budget[rows], log_price)
        arrival = rng.standard_exponential(size=util.shape, dtype=np.float32)
        keys = util / np.float32(temperature) + log_popularity
        keys -= np.log(np.maximum(arrival, np.float32(1e-30)))
        counts = n_pairs[rows]
        picks = _shuffle_rows(rng, _top_per_row(keys, counts), counts)
        stays = _walk(rng, keys, picks, counts, onward, strength)
        row, step = np.nonzero(np.arange(stays.shape[1]) < counts[:, None])
        col = stays[row, step]
        users_out.append(rows[row])
        items_out.append(col)
        steps_out.append(step)
        utils_out.append(util[row, col].astype(np.float64))
    user, step = np.concatenate(users_out), np.concatenate(steps_out)
    by_stay = np.lexsort((step, user))
    return (user[by_stay], np.concatenate(items_out)[by_stay], step[by_stay],
            np.concatenate(utils_out)[by_stay])


def _top_per_row(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Columns of each row's largest keys, best first, ``counts.max()`` of them: row ``r``'s
    first ``counts[r]`` are its picks."""
    deepest = int(counts.max())
    if deepest < keys.shape[1]:
        part = np.argpartition(-keys, deepest - 1, axis=1)[:, :deepest]
    else:
        part = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
    return np.take_along_axis(part, np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1),
                              axis=1)


def _shuffle_rows(rng: np.random.Generator, picks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's first ``counts[r]`` picks in random order, the rest after them.

    Gumbel top-k ranks picks by key, best first; stays in that order would drift from good to
    bad over each user's period, a trend no real log has.
    """
    noise = rng.random(picks.shape)
    noise[np.arange(picks.shape[1]) >= counts[:, None]] = 2.0  # padding sorts last
    return np.take_along_axis(picks, np.argsort(noise, axis=1), axis=1)


def _walk(rng: np.random.Generator, keys: np.ndarray, picks: np.ndarray, counts: np.ndarray,
          onward: np.ndarray, strength: float) -> np.ndarray:
    """Each row's stays in order, (rows, depth): a walk that follows onward links or jumps.

    After each stay, with probability ``strength``, the next is the onward listing of the last
    stay with the largest key (the user's Gumbel-max choice among them), among those not yet
    stayed at and plausible (key at most ``_PLAUSIBLE`` below the row's weakest pick); otherwise,
    or if there is none, the next of ``picks`` not yet stayed at. ``counts`` must ascend (as
    ``_choose``'s blocks do), so the rows still walking at a step are a suffix. There is always
    a pick left: the picks passed over were stays, fewer than ``counts``.
    """
    n_rows, depth = picks.shape
    valid = np.arange(depth) < counts[:, None]
    pick_keys = np.take_along_axis(keys, picks, axis=1)
    floor = np.where(valid, pick_keys, np.inf).min(axis=1) - np.float32(_PLAUSIBLE)
    stays = np.zeros_like(picks)
    stayed = np.zeros(keys.shape, dtype=bool)
    taken = np.zeros(n_rows, dtype=np.int64)  # picks used or passed over, per row
    follows = rng.random((n_rows, depth)) < strength
    for k in range(depth):
        rows = np.arange(int(np.searchsorted(counts, k, side="right")), n_rows)
        step = _next_pick(picks, stayed, taken, rows)
        if k > 0:
            near = onward[stays[rows, k - 1]]
            near_keys = keys[rows[:, None], near]
            shut = stayed[rows[:, None], near] | (near_keys < floor[rows, None])
            near_keys = np.where(shut, -np.inf, near_keys)
            best = near_keys.argmax(axis=1)
            on = follows[rows, k] & np.isfinite(near_keys[np.arange(len(rows)), best])
            step = np.where(on, near[np.arange(len(rows)), best], step)
            taken[rows[on]] -= 1  # the pick was not used: hand it back
        stays[rows, k] = step
        stayed[rows, step] = True
    return stays


def _next_pick(picks: np.ndarray, stayed: np.ndarray, taken: np.ndarray,
               rows: np.ndarray) -> np.ndarray:
    """Each row's next pick not yet stayed at (following on may have reached it); takes it."""
    while True:
        pick = picks[rows, taken[rows]]
        passed = stayed[rows, pick]
        if not passed.any():
            taken[rows] += 1
            return pick
        taken[rows[passed]] += 1


# -- events -----------------------------------------------------------------------------------
def _events(rng: np.random.Generator, stays: tuple[np.ndarray, np.ndarray, np.ndarray],
            z: np.ndarray, price: np.ndarray, n_users: int,
            span: int) -> tuple[np.ndarray, ...]:
    """Every pair's events as (user, item, type code, value, seconds since the window's start).

    ``stays`` is (user, item, step), sorted by user and step. Events at or after ``span`` are
    cut; times rise along each pair's funnel, so a cut event's successors are cut too.
    """
    user, item, step = stays
    t0 = _first_touch(rng, user, step, n_users, span)
    visits = _visits(rng, z, t0)
    last_visit = visits[3][np.r_[np.flatnonzero(np.diff(visits[0])), len(visits[0]) - 1]]
    funnel = _funnel(rng, z, t0, last_visit, price[item])
    pair, code, value, seconds = (np.concatenate(parts) for parts in zip(visits, *funnel,
                                                                          strict=True))
    kept = seconds < span
    pair = pair[kept]
    return user[pair], item[pair], code[kept], value[kept], seconds[kept]


def _first_touch(rng: np.random.Generator, user: np.ndarray, step: np.ndarray, n_users: int,
                 span: int) -> np.ndarray:
    """When each pair starts: uniform over its user's active sub-period, rising with ``step``.

    Pairs are sorted by user and step. Each user's uniform times are sorted onto their steps,
    and step ``k`` adds ``k`` seconds to a time drawn ``count`` seconds short of the period's
    end, so the times rise strictly and still fall inside the period.
    """
    length = np.maximum(DAY, rng.beta(1.5, 2.5, n_users) * span)
    begin = rng.random(n_users) * (span - length)
    room = np.maximum(length - np.bincount(user, minlength=n_users), 0.0)
    drawn = rng.random(len(user))
    drawn = drawn[np.lexsort((drawn, user))]
    return (begin[user] + np.floor(drawn * room[user])).astype(np.int64) + step


def _visits(rng: np.random.Generator, z: np.ndarray,
            t0: np.ndarray) -> tuple[np.ndarray, ...]:
    """One visit per pair, plus returns (more when utility is higher), a minute apart at least.

    Each visit is a ``view`` or a ``dwell`` whose seconds grow with utility. Returns (pair, type,
    value, seconds), sorted by pair.
    """
    n = 1 + np.minimum(rng.poisson(0.4 * np.exp(0.5 * z)), 4)
    pair = np.repeat(np.arange(len(z)), n)
    first = np.r_[0, np.cumsum(n)[:-1]]
    gap = 60 + rng.exponential(2 * DAY, len(pair)).astype(np.int64)
    gap[first] = 0
    elapsed = np.cumsum(gap)
    seconds = t0[pair] + elapsed - elapsed[first][pair]
    dwell = rng.random(len(pair)) < 0.5
    stay = np.clip(np.rint(rng.lognormal(np.log(40) + 0.6 * z[pair], 0.9)), 2, 3600)
    code = np.where(dwell, _DWELL, _VIEW)
    return pair, code, np.where(dwell, stay, np.nan), seconds


def _funnel(rng: np.random.Generator, z: np.ndarray, t0: np.ndarray, last_visit: np.ndarray,
            price: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Watch, add-to-cart, booking and rating, each (pair, type, value, seconds).

    Probabilities rise with utility ``z``. The watch happens during the first visit; the cart
    follows the last visit; the rating comes after the stay.
    """
    n = len(z)
    watched = rng.random(n) < _sigmoid(-1.2 + 0.6 * z)
    fraction = np.clip(np.round(_sigmoid(rng.normal(0.8 * z - 0.2, 0.8)), 2), 0.01, 1.0)
    watch_at = t0 + 1 + rng.integers(0, 60, n)
    carted = rng.random(n) < _sigmoid(-2.2 + 1.2 * z)
    cart_at = last_visit + 120 + rng.exponential(1800, n).astype(np.int64)
    booked = carted & (rng.random(n) < _sigmoid(0.8 * z))
    book_at = cart_at + 60 + rng.exponential(6 * 3600, n).astype(np.int64)
    nights = 1 + np.minimum(rng.poisson(2.5, n), 20)
    rated = booked & (rng.random(n) < 0.6)
    stay_from = book_at + (rng.uniform(2, 60, n) * DAY).astype(np.int64)
    rate_at = stay_from + nights * DAY + (rng.uniform(0.5, 7, n) * DAY).astype(np.int64)
    stars = np.clip(np.rint(3.6 + 0.8 * z + rng.normal(0, 0.6, n)), 1, 5)
    nan = np.full(n, np.nan)
    steps = ((watched, _WATCH, fraction, watch_at), (carted, _CART, nan, cart_at),
             (booked, _BOOKING, np.round(price * nights, 2), book_at),
             (rated, _RATING, stars, rate_at))
    return [(np.flatnonzero(mask), np.full(int(mask.sum()), code), value[mask], at[mask])
            for mask, code, value, at in steps]


def _devices(rng: np.random.Generator, user: np.ndarray, item: np.ndarray, price: np.ndarray,
             strength: float) -> np.ndarray:
    """Each event's device (codes into :data:`DEVICES`): one per (user, item) pair, drawn from
    the user's leaning and the listing's standardised log price."""
    keys = user.astype(np.int64) * len(price) + item
    pairs, event_pair = np.unique(keys, return_inverse=True)
    lean = rng.normal(0.0, 1.0, int(user.max()) + 1 if len(user) else 0)
    cheap = -_standardise(np.log(price))
    logit = lean[pairs // len(price)] + strength * cheap[pairs % len(price)]
    mobile = rng.random(len(pairs)) < _sigmoid(logit)
    return np.where(mobile, 0, 1)[event_pair]


# -- frames -----------------------------------------------------------------------------------
def _events_frame(users: tuple[np.ndarray, np.ndarray], items: tuple[np.ndarray, np.ndarray],
                  code: np.ndarray, value: np.ndarray, seconds: np.ndarray,
                  origin: np.datetime64, device: np.ndarray) -> pd.DataFrame:
    """The canonical event table in time order (ties by user, item, funnel step), with each
    event's device.

    ``users`` and ``items`` are (ids, index per event): sorting indices is much faster than ids.
    """
    (user_ids, user), (item_ids, item) = users, items
    order = np.lexsort((code, item, user, seconds))
    types = np.array(EVENT_TYPES, dtype=object)
    frame = pd.DataFrame({
        "user_id": pd.Series(user_ids[user[order]], dtype=object),
        "item_id": pd.Series(item_ids[item[order]], dtype=object),
        "event_type": pd.Series(types[code[order]], dtype=object),
        "value": value[order].astype(np.float64),
        "timestamp": origin + seconds[order].astype("timedelta64[s]"),
        "device": pd.Series(np.array(DEVICES, dtype=object)[device[order]], dtype=object),
    })
    return frame[[*EVENT_COLUMNS, "device"]]


def _items_frame(rng: np.random.Generator, items: _Items, ids: np.ndarray,
                 origin: np.datetime64) -> pd.DataFrame:
    n = len(ids)
    region = np.array([r.name for r in REGIONS], dtype=object)[items.region]
    kind = np.array([t.name for t in PROPERTY_TYPES], dtype=object)[items.kind]
    labels = [[AMENITIES[a] for a in np.flatnonzero(row)] for row in items.amenities]
    tier = np.argsort(np.argsort(items.price / items.bedrooms)) * 3 // n
    adjective = np.array(_ADJECTIVES)[tier, rng.integers(0, 3, n)]
    day = origin.astype("datetime64[D]")
    listed = (day - rng.integers(30, 4 * 365, n).astype("timedelta64[D]")).astype("datetime64[s]")
    titles, descriptions = zip(*(_text(*row) for row in zip(adjective, items.bedrooms, kind,
                                                              region, labels, strict=True)),
                               strict=True)
    return pd.DataFrame({
        "title": pd.Series(titles, dtype=object),
        "description": pd.Series(descriptions, dtype=object),
        "region": pd.Series(region, dtype=object),
        "property_type": pd.Series(kind, dtype=object),
        "bedrooms": items.bedrooms.astype(np.float64),
        "price_per_night": items.price.astype(np.float64),
        "amenities": pd.Series(labels, dtype=object),
        "latitude": np.round(items.coords[:, 0], 5),
        "longitude": np.round(items.coords[:, 1], 5),
        "listed_date": listed,
    }).set_axis(pd.Index(ids, dtype=object, name="item_id"))


_ADJECTIVES = (("Cozy", "Charming", "Snug"), ("Bright", "Modern", "Lovely"),
               ("Luxury", "Stunning", "Elegant"))


def _text(adjective: str, bedrooms: int, kind: str, region: str,
          amenities: list[str]) -> tuple[str, str]:
    """Title and description, e.g. "Cozy 2-bedroom cabin in Alpine Lakes with fireplace and hot
    tub, sleeps 4."; the rarest amenities are named first."""
    highlights = sorted(amenities, key=AMENITIES.index, reverse=True)[:3]
    if not highlights:
        return f"{adjective} {kind} in {region}", (
            f"{adjective} {bedrooms}-bedroom {kind} in {region}, sleeps {2 * bedrooms}.")
    listed = highlights[0] if len(highlights) == 1 else (
        f"{', '.join(highlights[:-1])} and {highlights[-1]}")
    return f"{region} {kind} with {highlights[0]}", (
        f"{adjective} {bedrooms}-bedroom {kind} in {region} with {listed}, "
        f"sleeps {2 * bedrooms}.")


def _users_frame(users: _Users, ids: np.ndarray) -> pd.DataFrame:
    def names(values: tuple[str, ...], codes: np.ndarray) -> pd.Series:
        return pd.Series(np.array(values, dtype=object)[codes], dtype=object)

    return pd.DataFrame({
        "segment": names(tuple(s.name for s in SEGMENTS), users.segment),
        "age_band": names(AGE_BANDS, users.age),
        "home_country": names(tuple(c.code for c in COUNTRIES), users.country),
    }).set_axis(pd.Index(ids, dtype=object, name="user_id"))


def _truth(users: _Users, items: _Items, ids: tuple[np.ndarray, np.ndarray],
           pairs: tuple[np.ndarray, ...], onward: np.ndarray) -> SyntheticTruth:
    (user_ids, item_ids), (user, item, step, z) = ids, pairs
    tastes = pd.DataFrame({
        "preferred_region": np.array([r.name for r in REGIONS], dtype=object)[
            users.region_pref.argmax(axis=1)],
        "preferred_type": np.array([t.name for t in PROPERTY_TYPES], dtype=object)[
            users.type_pref.argmax(axis=1)],
        "budget": users.budget,
        "group_size": users.group_size,
        "bedrooms_needed": users.bedrooms_needed,
    }, index=pd.Index(user_ids, dtype=object, name="user_id"))
    weight = np.exp(items.log_popularity - items.log_popularity.max())
    popularity = pd.Series(weight / weight.sum(), index=pd.Index(item_ids, dtype=object,
                                                                 name="item_id"))
    chosen = pd.DataFrame({"user_id": pd.Series(user_ids[user], dtype=object),
                           "item_id": pd.Series(item_ids[item], dtype=object), "utility": z,
                           "step": step})
    ahead = pd.DataFrame(item_ids[onward], index=pd.Index(item_ids, dtype=object, name="item_id"))
    return SyntheticTruth(users.factors, items.factors, tastes, popularity, chosen, ahead)


# -- small helpers ----------------------------------------------------------------------------
def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _draw_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows sum to 1), vectorised inverse-CDF sampling."""
    cdf = np.cumsum(probs, axis=1)
    drawn = (rng.random(len(probs))[:, None] * cdf[:, -1:] > cdf).sum(axis=1)
    return np.minimum(drawn, probs.shape[1] - 1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _standardise(x: np.ndarray) -> np.ndarray:
    scale = x.std()
    return (x - x.mean()) / scale if scale > 0 else np.zeros_like(x)

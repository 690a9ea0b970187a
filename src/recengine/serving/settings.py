"""Server settings: one pydantic-settings class read from ``RECENGINE_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recengine.models.retrieval import INDEX_MIN_ITEMS

__all__ = ["MIN_KEY_LENGTH", "Settings"]

#: Keys nobody should deploy with.
_DEFAULT_SECRETS = frozenset({"changeme", "changethis", "secret", "password", "key"})

#: The shortest API key accepted: a one-character key is guessed in a few dozen tries.
MIN_KEY_LENGTH = 16


def _split(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class Settings(BaseSettings):
    """Everything the server reads from its environment, validated at start-up.

    ``read_keys`` and ``write_keys`` are comma-separated API keys (header ``X-API-Key``), each
    at least :data:`MIN_KEY_LENGTH` characters. Empty ``read_keys`` leaves reads open (the
    OpenAPI description, ``/docs`` and ``/metrics`` too); writes always need a write key unless
    ``allow_anonymous_writes`` (local demos only).

    Limits (issue 11): every request is bounded by ``max_request_bytes``, ``max_k``,
    ``max_batch``, ``max_batch_results`` and ``max_explained``, all published in the OpenAPI
    description. Rate limits are off by default (``rate_limit_per_second``), as one process
    cannot tell a load test from an abuser; failed keys are throttled by default, and heavy
    requests always share ``heavy_processes`` worker processes (or, with 0 of those,
    ``heavy_concurrency`` worker threads).

    >>> Settings(write_keys="k1-long-enough-16, k2-long-enough-16").write_key_set == {
    ...     "k1-long-enough-16", "k2-long-enough-16"}
    True
    """

    model_config = SettingsConfigDict(env_prefix="RECENGINE_", extra="ignore")

    database_url: str = "sqlite:///recengine-output/recengine.db"
    registry: str = "recengine-output/registry"
    read_keys: str = ""
    write_keys: str = ""
    allow_anonymous_writes: bool = False
    max_request_bytes: int = Field(1024 * 1024, ge=1)
    max_batch: int = Field(1000, ge=1)
    max_k: int = Field(1000, ge=1)
    #: The most results one batch may ask for: its users (items) × k (n). 1,000 users × k=1,000
    #: made a 101 MB answer that took 5-14 s.
    max_batch_results: int = Field(10_000, ge=1)
    #: The most items one request may explain (explain=true): the reasons cost more than the
    #: ranking.
    max_explained: int = Field(1000, ge=1)
    #: Requests per second per API key (per client address without a valid key), sustained;
    #: None (the default) sets no rate limit. Over it: 429 with Retry-After.
    rate_limit_per_second: float | None = Field(None, gt=0)
    #: The requests a key may make at once above its rate, after being idle.
    rate_limit_burst: int = Field(20, ge=1)
    #: Failed key checks (a wrong key) a client address may make per window; then 429 with
    #: Retry-After until the window ends, whatever key it sends.
    auth_failure_limit: int = Field(20, ge=1)
    auth_failure_window_seconds: float = Field(60, gt=0)
    #: Processes computing heavy requests (batches, explain, constraints, rules), one request
    #: each, at a lower priority, per server process (serving/heavy.py): they hold their own
    #: interpreter lock, not the light requests'. Each holds a copy of the served version.
    #: 0 computes them in ``heavy_concurrency`` threads of the server process instead.
    heavy_processes: int = Field(1, ge=0)
    #: Heavy requests computed at once in worker threads, when ``heavy_processes`` is 0.
    heavy_concurrency: int = Field(2, ge=1)
    #: Heavy requests waiting for a process (thread); past that, 429.
    heavy_queue: int = Field(32, ge=0)
    #: How long a thread holds the interpreter lock while another waits for it, in each server
    #: process (Python's default is 5 ms): light requests wait this long, several times each,
    #: while heavy ones compute.
    switch_interval_ms: float = Field(0.5, gt=0, le=100)
    retrain_every_seconds: float | None = Field(None, gt=0)
    retrain_after_events: int | None = Field(None, ge=1)
    #: Comma-separated model names retrained with their default configurations; empty (the
    #: default) retrains the active version's models with the configurations they were served with.
    retrain_models: str = ""
    #: Where background retraining runs: ``local``, or ``spark`` (``retrain --engine spark``:
    #: events prepared, split and scored on ``retrain_spark_master``, a PostgreSQL store read
    #: over JDBC, each WALS configuration as ``spark-als``; the spark extra and a Java runtime
    #: on the server's host). The gate and the other models' fits stay in the retrain process.
    retrain_engine: Literal["local", "spark"] = "local"
    retrain_spark_master: str = "local[2]"
    #: With no active version, the server answers popularity over the stored events, and trains
    #: and activates its first version (``retrain_models``, else wals and popularity) once the
    #: store holds this many events, in a child process; 0 leaves that to an operator.
    bootstrap_after_events: int = Field(1000, ge=0)
    #: Catalogues of at least this many items answer top-k and similar items from HNSW graphs
    #: (approximate, many times faster): those saved with the model, else built on loading;
    #: 0 answers every model exactly.
    approximate_min_items: int = Field(INDEX_MIN_ITEMS, ge=0)
    #: The HNSW search depth: higher keeps more of the exact top-k, slower.
    approximate_ef_search: int = Field(64, ge=1)
    #: Users whose last plain answers are kept until their history or the model changes (about
    #: 2.4 KB each at k=10); 0 computes every answer.
    cache_users: int = Field(20_000, ge=0)
    #: A JSON file of business rules applied to every recommendation (see models/rules.py).
    rules_file: str | None = None
    #: Live histories (events since the served version's training) keep this many events per
    #: user, the most recent, and this many in all; users past the bound are read back from the
    #: store when asked for (serving/live.py).
    live_per_user: int = Field(200, ge=1)
    live_max_events: int = Field(1_000_000, ge=1)
    #: Every this many seconds, each server process reads what changed in the store and the
    #: registry without hearing of it (writes from other hosts or from commands); writes through
    #: this host's server processes are seen by the next request (serving/bell.py).
    sync_seconds: float = Field(1.0, gt=0)

    @field_validator("read_keys", "write_keys")
    @classmethod
    def _no_weak_keys(cls, value: str) -> str:
        for key in _split(value):
            if key.lower() in _DEFAULT_SECRETS:
                raise ValueError(f"refusing the default secret {key!r}: set a real API key")
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"an API key of {len(key)} characters is too easily guessed: "
                                 f"use at least {MIN_KEY_LENGTH} (e.g. openssl rand -hex 16)")
        return value

    @model_validator(mode="after")
    def _database(self) -> Settings:
        if not self.database_url.startswith(("sqlite://", "postgresql")):
            raise ValueError("database_url must start with sqlite:// or postgresql")
        return self

    @field_validator("retrain_models")
    @classmethod
    def _known_models(cls, value: str) -> str:
        from recengine.errors import ModelNotFoundError
        from recengine.models.registry import model_class

        for name in (part.strip() for part in value.split(",") if part.strip()):
            try:
                model_class(name)
            except ModelNotFoundError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def retraining(self) -> bool:
        """Whether a retrain trigger is set (the server then retrains in the background)."""
        return self.retrain_every_seconds is not None or self.retrain_after_events is not None

    @property
    def retrain_model_configs(self) -> dict[str, dict[str, object]] | None:
        """``retrain_models`` as name → config (defaults); None: the active version's models.

        >>> Settings().retrain_model_configs is None
        True
        """
        return {part.strip(): {} for part in self.retrain_models.split(",")
                if part.strip()} or None

    @property
    def approximate_from(self) -> int | None:
        """The catalogue size from which top-k is approximate; None when it is always exact."""
        return self.approximate_min_items or None

    @property
    def read_key_set(self) -> frozenset[str]:
        return _split(self.read_keys)

    @property
    def write_key_set(self) -> frozenset[str]:
        return _split(self.write_keys)

"""Server settings: one pydantic-settings class read from ``RECENGINE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recengine.models.retrieval import INDEX_MIN_ITEMS

__all__ = ["Settings"]

#: Keys nobody should deploy with.
_DEFAULT_SECRETS = frozenset({"changeme", "changethis", "secret", "password", "key"})


def _split(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class Settings(BaseSettings):
    """Everything the server reads from its environment, validated at start-up.

    ``read_keys`` and ``write_keys`` are comma-separated API keys (header ``X-API-Key``). Empty
    ``read_keys`` leaves reads open; writes always need a write key unless
    ``allow_anonymous_writes`` (local demos only).

    >>> Settings(write_keys="k1-long-enough, k2-long-enough").write_key_set == {
    ...     "k1-long-enough", "k2-long-enough"}
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
    retrain_every_seconds: float | None = Field(None, gt=0)
    retrain_after_events: int | None = Field(None, ge=1)
    #: Comma-separated model names retrained with their default configurations; empty (the
    #: default) retrains the active version's models with the configurations they were served with.
    retrain_models: str = ""
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
    def _no_default_secrets(cls, value: str) -> str:
        for key in _split(value):
            if key.lower() in _DEFAULT_SECRETS:
                raise ValueError(f"refusing the default secret {key!r}: set a real API key")
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

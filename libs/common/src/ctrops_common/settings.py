"""Settings shared by every service: one env prefix (``CTROPS_``), fail fast on bad values.

A few well-known names (``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI``,
``OPENAI_API_KEY``, ``FRONTEND_DIST``) are also accepted without the prefix because
operators and the tooling around them expect exactly those names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CTROPS_"


def env_alias(name: str, *bare: str) -> AliasChoices:
    """Accept ``CTROPS_<NAME>`` and, optionally, well-known unprefixed names."""
    return AliasChoices(ENV_PREFIX + name.upper(), *bare)


class CommonSettings(BaseSettings):
    """What every service needs: broker, storage, database, logging, heartbeats."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=env_alias("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated.",
    )
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._-]{0,100}$", description="Prefix of every topic name (isolates tenants, tests)."
    )
    topic_partitions: int = Field(3, ge=1, le=64, description="Partitions for topics created at start-up.")
    topic_replication: int = Field(1, ge=1, le=5, description="Replication factor for topics created at start-up.")
    data_dir: Path = Field(Path("data"), description="Root of the file store (uploads, models, reports).")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: one SQLite file per service under DATA_DIR/db.",
    )
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$", description="Log level.")
    log_json: bool = Field(True, description="JSON log lines (false: plain text for humans).")
    heartbeat_interval_s: float = Field(5.0, gt=0, le=300, description="Seconds between service.heartbeat events.")
    consumer_max_attempts: int = Field(4, ge=1, le=20, description="Handler tries before dead-lettering.")
    consumer_backoff_s: float = Field(0.2, ge=0, le=60, description="First retry delay; doubles each retry.")
    consumer_session_timeout_s: float = Field(
        10.0, ge=3, le=300, description="A consumer silent this long is dropped from its group (then redelivery)."
    )
    consumer_fetch_max_wait_ms: int = Field(
        100, ge=0, le=5000, description="Longest the broker holds a fetch when no data is waiting (latency floor)."
    )
    processed_events_retention_days: float = Field(
        14.0, ge=1, le=365,
        description="Days a consumer remembers the events it finished (a redelivery of one is skipped); older "
        "ones are pruned hourly. At least the topics' log retention plus segment roll time (Kafka defaults: 7 + 7).",
    )
    instance_id: str = Field("", description="Stable id of this process; default host-pid.")

    def sqlalchemy_url(self, service: str) -> str:
        if self.database_url:
            return self.database_url
        db_dir = self.data_dir.resolve() / "db"
        db_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db_dir / service}.sqlite3"


class ServiceSettings(CommonSettings):
    """Common settings plus this service's small HTTP port for /healthz, /readyz, /metrics."""

    http_host: str = Field("127.0.0.1", description="Bind address of the health/metrics server.")
    http_port: int = Field(0, ge=0, le=65535, description="0 picks the service's default port.")


S = TypeVar("S", bound=BaseSettings)


def describe_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """Turn a pydantic error into lines that name the environment variable to fix."""
    prefix = cls.model_config.get("env_prefix", "")
    lines = []
    for err in exc.errors():
        if not err["loc"]:
            # A check across fields: its input is every setting, secrets included; never print it.
            lines.append(f"invalid settings: {err['msg']}")
            continue
        field = str(err["loc"][0])
        var = (prefix + field).upper()
        info = cls.model_fields.get(field)
        secret = info is not None and "Secret" in repr(info.annotation)
        value = "'***'" if secret else repr(err.get("input"))
        lines.append(f"invalid setting {var}={value}: {err['msg']}")
    return "\n".join(lines)


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment or exit with a message naming the bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        print(describe_error(cls, exc), file=sys.stderr)
        raise SystemExit(2) from None

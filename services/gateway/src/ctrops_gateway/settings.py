"""Gateway settings (CTROPS_ prefix; FRONTEND_DIST also accepted bare)."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from ctrops_common.settings import ServiceSettings, env_alias

from .proxies import parse_networks
from .rate_limits import check_storage_url


class GatewaySettings(ServiceSettings):
    gateway_host: str = Field("127.0.0.1", description="Bind address of the API (0.0.0.0 in containers).")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the API.")
    cors_origins: str = Field(
        "http://localhost:3000,http://127.0.0.1:3000",
        description="Comma-separated origins allowed by CORS.",
    )
    frontend_dist: Path | None = Field(
        None,
        validation_alias=env_alias("frontend_dist", "FRONTEND_DIST"),
        description="Folder of a built single-page frontend to serve at /.",
    )
    consumer_group: str = Field("", description="Kafka group of this replica's read model; default gateway-<host>.")
    service_timeout_s: float = Field(20.0, gt=0, description="A service without a heartbeat this long is down.")
    max_upload_mb: float = Field(500, gt=0, description="Largest accepted upload (413 above).")
    upload_timeout_s: float = Field(600, gt=0, description="How long an upload waits for ingest's verdict.")
    report_timeout_s: float = Field(
        120, gt=0,
        description="How long a report or PDF request waits for the run's explanation and report (409 after).",
    )
    request_header_timeout_s: float = Field(
        10, gt=0, le=3600,
        description="A client must send its request line and headers within this long of connecting (or, on a "
        "keep-alive connection, of its next request's first byte); the connection is closed after, with 408 if part "
        "of a request arrived (header slowloris; header_deadline.py).",
    )
    request_body_timeout_s: float = Field(
        30, gt=0, le=3600,
        description="A request body (upload or JSON) that sends nothing this long is cut off: 408, nothing kept.",
    )
    request_body_min_rate_bps: float = Field(
        500, ge=0, le=1e9,
        description="Slowest average a request body may arrive at: its deadline is CTROPS_REQUEST_BODY_TIMEOUT_S plus "
        "1 s per this many bytes received (408 after; 0: no rate, only the stall timeout). Apache's MinRate default.",
    )
    replay_on_start: bool = Field(
        True,
        description="At start-up (once the broker is reachable), request again the runs and batch jobs the read "
        "model holds as open from the last day, as after a broker restart (replay.py); harmless when nothing was lost.",
    )
    max_concurrent_uploads: int = Field(
        32, ge=1, le=10_000,
        description="Uploads received at once per gateway process (each holds a socket and a file); "
        "503 + Retry-After beyond.",
    )
    training_memory_limit_mb: float = Field(
        4096, gt=0, le=16 * 1024 * 1024,
        description="Largest estimated trainer memory a training config may need (422 above; training_cost.py); "
        "set it to what one training process may use (the trainer's pod limit is 6 GiB).",
    )
    ws_performance_interval_s: float = Field(10.0, gt=0, description="Push period of /ws/performance.")

    # ---- Inference (issue 16): the scorer's internal API, proxied by POST /api/predict/{run_id} ----
    scorer_url: str = Field(
        "http://127.0.0.1:8090", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Base URL of the scorer's internal prediction API (CTROPS_SCORER_API_HOST/PORT of the scorer).",
    )
    scorer_timeout_s: float = Field(
        30.0, gt=0, le=600, description="How long an online prediction waits for the scorer (504 after)."
    )
    scorer_max_connections: int = Field(
        64, ge=1, le=10_000, description="Connections to the scorer kept open and used at once (the proxy's pool)."
    )
    scorer_retry_after_s: int = Field(
        5, ge=1, le=3600, description="Retry-After sent with the 503 when the scorer cannot be reached."
    )
    max_predict_body_mb: float = Field(
        64, gt=0, le=1024,
        description="Largest JSON body of POST /api/predict/{run_id} (413 above): about 20,000 rows of the "
        "119-column layout (~3 KB a row), above the scorer's CTROPS_SCORER_MAX_ROWS (10,000), whose 413 names "
        "the row limit.",
    )

    # ---- Hardening (issue 10; docs/security.md): authentication, limits, audit, headers ----
    auth_enabled: bool = Field(
        False, description="Require credentials (API key or JWT) on /api and /ws; off for the local frontend."
    )
    auth_api_keys: SecretStr | None = Field(
        None,
        description="API keys as 'key:role:client' or 'sha256:<hex>:role:client', comma-separated "
        "(roles: viewer, operator, admin). From a Secret; never logged.",
    )
    auth_jwt_secret: SecretStr | None = Field(
        None, description="Shared secret (>= 32 chars) verifying HS256/384/512 bearer tokens. From a Secret."
    )
    auth_jwt_public_key: str | None = Field(
        None, description="PEM public key verifying RS*/ES*/PS*/EdDSA bearer tokens (instead of, or beside, the secret)."
    )
    auth_jwt_algorithms: str = Field(
        "HS256", pattern=r"^(HS|RS|ES|PS)(256|384|512)(,(HS|RS|ES|PS)(256|384|512)|,EdDSA)*$|^EdDSA$",
        description="Accepted JWT algorithms, comma-separated.",
    )
    auth_jwt_audience: str = Field("", description="Required JWT 'aud' claim (empty: not checked).")
    auth_jwt_issuer: str = Field("", description="Required JWT 'iss' claim (empty: not checked).")
    auth_jwt_leeway_s: float = Field(30.0, ge=0, le=600, description="Clock skew tolerated on exp/nbf/iat.")
    max_json_body_kb: int = Field(
        256, ge=1, le=102_400, description="Largest request body of any route but the upload (413 above)."
    )
    rate_limit_uploads_per_min: int = Field(
        10, ge=0, le=100_000,
        description="Uploads per client (files to score included) in any 60 s (a moving window: all at once, then "
        "none until the first is a minute old); 0: unlimited.",
    )
    rate_limit_trainings_per_min: int = Field(
        6, ge=0, le=100_000,
        description="Training requests per client (retrains included) in any 60 s (a moving window); 0: unlimited.",
    )
    rate_limit_storage: SecretStr = Field(
        SecretStr("memory://"),
        description="Where the per-minute rate limits count (rate_limits.py): memory:// (this process: each replica "
        "limits alone), redis://[:password@]host:port/db or rediss://... (one Redis shared by the replicas), or "
        "database:// (the gateway database, CTROPS_DATABASE_URL: shared by the replicas on PostgreSQL). Checked at "
        "start-up; never logged (a Redis URL may carry a password: take it from a Secret).",
    )
    rate_limit_key_prefix: str = Field(
        "ctrops", pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Prefix of the rate limit keys in the store (deployments sharing one Redis keep apart by it).",
    )
    max_active_trainings_per_client: int = Field(
        3, ge=0, le=10_000, description="Training runs one client may have queued or running at once; 0: unlimited."
    )
    training_active_max_age_h: float = Field(
        24, gt=0, le=24 * 365, description="An unfinished run older than this no longer counts as active."
    )
    ws_max_connections_per_client: int = Field(
        20, ge=1, le=10_000, description="Open WebSockets per client (the frontend uses 2 per tab)."
    )
    ws_max_message_bytes: int = Field(
        4096, ge=1, le=16 * 1024 * 1024, description="Largest message a WebSocket client may send (close 1009 above)."
    )
    ws_max_messages_per_min: int = Field(
        60, ge=1, le=1_000_000, description="Messages per minute a WebSocket client may send (close 1008 above)."
    )
    trusted_proxies: str = Field(
        "",
        validation_alias=env_alias("trusted_proxies", "FORWARDED_ALLOW_IPS"),
        description="Reverse proxies (IP addresses and CIDRs, comma-separated; '*' any) whose X-Forwarded-For / "
        "Forwarded headers name the client for rate limits and the audit trail; empty: none, the peer address counts.",
    )
    docs_frame_ancestors: str = Field(
        "",
        description="Origins allowed to embed /docs in an iframe, space-separated; empty: 'self' and the CORS origins.",
    )
    hsts_max_age_s: int = Field(
        0, ge=0, le=63_072_000, description="Strict-Transport-Security max-age (0: not sent; set it behind TLS)."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        parse_networks(value)  # ValueError names the bad entry
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_parses(cls, value: SecretStr) -> SecretStr:
        check_storage_url(value.get_secret_value())  # ValueError says what is wrong, never the URL
        return value

    @property
    def auth_jwt_algorithm_list(self) -> list[str]:
        return [a.strip() for a in self.auth_jwt_algorithms.split(",") if a.strip()]

    @model_validator(mode="after")
    def _auth_has_credentials(self) -> "GatewaySettings":
        # Only presence here; the key format and secret strength are checked when the app is
        # built (auth.check_auth_settings), so errors never echo a secret.
        if self.auth_enabled and not (self.auth_api_keys or self.auth_jwt_secret or self.auth_jwt_public_key):
            raise ValueError(
                "CTROPS_AUTH_ENABLED=true needs credentials to check: set CTROPS_AUTH_API_KEYS and/or "
                "CTROPS_AUTH_JWT_SECRET (or CTROPS_AUTH_JWT_PUBLIC_KEY)"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

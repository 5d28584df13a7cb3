"""Gateway settings (CTROPS_ prefix; FRONTEND_DIST also accepted bare)."""

from pathlib import Path

from pydantic import Field

from ctrops_common.settings import ServiceSettings, env_alias


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
    report_timeout_s: float = Field(120, gt=0, description="How long a PDF request waits for the reporter.")
    ws_performance_interval_s: float = Field(10.0, gt=0, description="Push period of /ws/performance.")
    # Assumptions behind the marketer dashboard's money figures (shown beside them, labelled estimates).
    dashboard_cpc_krw: float = Field(300.0, ge=0, le=1_000_000, description="Assumed cost per click (KRW).")
    dashboard_conversion_rate: float = Field(
        0.03, ge=0, le=1, description="Assumed share of clicks that convert (0..1), for revenue estimates."
    )
    dashboard_conversion_value_krw: float = Field(
        40_000.0, ge=0, le=1e9, description="Assumed revenue per conversion (KRW)."
    )
    dashboard_monthly_impressions: int = Field(
        1_000_000, ge=0, le=10**12, description="Assumed monthly impressions the estimates scale to."
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

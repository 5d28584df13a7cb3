"""Settings of the monitor service (environment variables with the CTROPS_ prefix)."""

from __future__ import annotations

from pydantic import Field

from ctrops_common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    monitor_accuracy_threshold: float = Field(
        0.7, ge=0.0, le=1.0,
        description="A finished run whose validation accuracy is below this raises a model_accuracy alert.",
    )
    monitor_response_time_ms: float = Field(
        500.0, gt=0, le=600_000,
        description="The gateway's p95 API latency (ms) above this raises a response_time alert.",
    )
    monitor_heartbeat_timeout_s: float = Field(
        20.0, gt=0, le=3600,
        description="A service with no heartbeat for this long raises a service_down alert.",
    )
    monitor_error_rate_percent: float = Field(
        5.0, gt=0, le=100,
        description="Share of failed (5xx) API requests over the traffic window above which error_rate fires.",
    )
    monitor_error_rate_min_requests: int = Field(
        20, ge=1, le=1_000_000,
        description="The error-rate alert needs at least this many requests in the window (no alert on 1 of 2).",
    )
    monitor_traffic_window_s: float = Field(
        300.0, gt=0, le=86_400, description="Window of the API success/error rate, in seconds."
    )
    monitor_snapshot_interval_s: float = Field(
        10.0, gt=0, le=3600, description="How often the monitor publishes monitor.snapshot for the gateway."
    )
    monitor_check_interval_s: float = Field(
        1.0, gt=0, le=300, description="How often liveness, latency and error-rate alerts are evaluated."
    )
    monitor_calibration_low: float = Field(
        0.8, gt=0, le=1.0,
        description="A labelled period whose predicted/actual clicks fall below this (and whose 95% CI "
                    "excludes 1) raises a calibration alert.",
    )
    monitor_calibration_high: float = Field(
        1.25, ge=1.0, le=100,
        description="A labelled period whose predicted/actual clicks exceed this (and whose 95% CI excludes 1) "
                    "raises a calibration alert.",
    )
    monitor_drift_top_k: int = Field(
        10, ge=1, le=1000,
        description="Feature drift alerts (and ctrops_feature_psi series) cover the model's this many most "
                    "important features (every feature when a period has no importance ranks).",
    )
    monitor_drift_psi: float = Field(
        0.2, gt=0, le=100, description="A top feature whose PSI in a period is above this raises feature_drift.",
    )
    monitor_expected_services: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_,\s-]*$",
        description=(
            "Comma-separated services that must be running even if never seen (e.g. "
            "'gateway,ingest,trainer,explainer,reporter'); services seen once are always watched."
        ),
    )

    @property
    def expected_services(self) -> list[str]:
        return [s.strip() for s in self.monitor_expected_services.split(",") if s.strip()]

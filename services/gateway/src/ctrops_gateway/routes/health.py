"""Liveness of the platform: /api/health for people, /healthz /readyz /metrics for machines.

/healthz, /readyz and /metrics are for probes and Prometheus, not clients: they stay out of the
OpenAPI schema (``include_in_schema=False``) and so have no response model."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ctrops_common.observability import metrics_payload
from ctrops_common.service import PLATFORM_SERVICES

from ..api_models import HEALTH_EXAMPLE, HealthReport, success
from ..state import State

router = APIRouter()

SERVICES = list(PLATFORM_SERVICES)


@router.get("/api/health", tags=["health"], response_model=HealthReport,
            responses=success(HEALTH_EXAMPLE, "The platform's status (200 even when degraded: read `status`)"))
async def health(state: State) -> dict:
    """Overall status, each service's liveness from its heartbeats, broker reachability.

    No SQL and at most one TCP probe of the broker a second: liveness is the read model's in-memory
    heartbeat view, reachability the probe's answer of the last second."""
    services = state.views.service_liveness(SERVICES, state.settings.service_timeout_s)
    services["gateway"].update(status="up", instances=max(1, services["gateway"]["instances"]))
    broker_ok = await state.broker_probe.reachable(state.settings.kafka_bootstrap_servers)
    healthy = broker_ok and state.bus.consuming and all(s["status"] == "up" for s in services.values())
    down = ([] if broker_ok else ["broker"]) + [name for name, s in services.items() if s["status"] != "up"]
    return {
        "status": "healthy" if healthy else "degraded",
        "down": down,  # which parts: "broker" and/or each worker whose heartbeats stopped
        "services": services,
        "broker": {
            "reachable": broker_ok,
            "bootstrap_servers": state.settings.kafka_bootstrap_servers,
            "consuming": state.bus.consuming,
            "restarts_seen": state.bus.broker_restarts,
        },
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(state: State) -> JSONResponse:
    ready = state.bus.consuming
    return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)

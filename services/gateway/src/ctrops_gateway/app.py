"""The FastAPI app factory: settings -> runtime (bus, store) -> read model -> routes."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from ctrops_common.bus import Bus
from ctrops_common.service import BusFactory, ServiceRuntime

from . import broker_gate, consumers, performance_live, replay, training_live
from .audit import AuditLog
from .hardening import add_guards, add_security_headers, document_security
from .headers import DOCS_STATIC
from .measure import HTTP_REQUESTS, HTTP_SECONDS, Measure  # noqa: F401 - the metrics, importable from here too
from .predict_dispatch import PredictDispatch
from .rate_limits import open_rate_limits
from .routes import ROUTERS
from .routes import audit as audit_routes
from .scorer_client import ScorerClient
from .settings import GatewaySettings
from .spa import mount_frontend
from .state import GatewayState
from .training_cap import TrainingClaims
from .views import ReadModel

log = logging.getLogger(__name__)

def create_app(settings: GatewaySettings | None = None, *, bus_factory: BusFactory = Bus) -> FastAPI:
    """``bus_factory``: the runtime's bus; Kafka's ``Bus`` unless a test passes the in-memory one's."""
    settings = settings or GatewaySettings()
    group = settings.consumer_group or f"gateway-{socket.gethostname()}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime("gateway", settings, group_id=group, bus_factory=bus_factory)
        runtime.http_port = settings.gateway_port
        state = GatewayState(settings=settings, runtime=runtime, views=ReadModel(runtime.engine),
                             scorer=ScorerClient(settings))
        runtime.heartbeat_extras = state.traffic.summary
        # The live views' WebSocket pushes, wired here rather than registered by importing them.
        consumers.register(state, consumers.fan_out_table(training_live.FAN_OUT, performance_live.FAN_OUT))
        replay.install(state)  # runs left unfinished when the broker came back empty
        app.state.gateway = state
        app.state.audit = AuditLog(runtime.engine)
        # The routes' limits (dependencies): per-minute rates in CTROPS_RATE_LIMIT_STORAGE, active-run claims.
        app.state.rate_limits = await open_rate_limits(settings, runtime.engine)
        app.state.training_claims = TrainingClaims()
        await runtime.start(serve_http=False, handle_signals=False)
        try:
            yield
        finally:
            try:
                await runtime.shutdown()
            finally:
                try:
                    await state.scorer_client().aclose()
                finally:
                    await app.state.rate_limits.aclose()

    # /docs (Swagger UI) and /redoc load their scripts and styles from the gateway itself, out of
    # the pinned fastapi-offline package (mounted at DOCS_STATIC), never from a CDN: they work
    # offline and inside the frontend's API-tester iframe. validatorUrl None: no badge fetched
    # from validator.swagger.io either.
    app = FastAPIOffline(
        title="CTR AIOps gateway",
        version="0.1.0",
        description="Upload ad-click logs, train the CTR model, explain it and get the marketing report.",
        lifespan=lifespan,
        static_url=DOCS_STATIC,
        swagger_ui_parameters={"validatorUrl": None},
    )
    add_guards(app, settings)  # audit, auth, limits: inside CORS so their refusals carry CORS headers
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "WWW-Authenticate", "Content-Disposition"],
    )
    add_security_headers(app, settings)
    # Metrics around everything but the re-targeting below: it sees every guard's answer, and the
    # route the router matched on the scope PredictDispatch hands on (its copy, for a batch upload).
    app.add_middleware(Measure)
    app.add_middleware(PredictDispatch)  # outermost: a multipart POST /api/predict/{run_id} is the batch route

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with a message a person can act on, plus the structured errors."""
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse(
            status_code=422,
            content={"detail": "; ".join(problems) or "invalid request", "errors": _jsonable(exc.errors())},
        )

    broker_gate.install(app)  # BrokerUnavailable from any route -> 503 + Retry-After

    for router in ROUTERS:
        app.include_router(router)
    app.include_router(audit_routes.router)
    document_security(app, settings)
    mount_frontend(app, settings.frontend_dist)
    return app


def _jsonable(errors: list[dict]) -> list[dict]:
    # A non-finite float (an input of nan) cannot be written as JSON: it would turn the 422 into a 500.
    return [{k: (v if isinstance(v, (str, int, bool, list, type(None))) or isinstance(v, float) and math.isfinite(v)
                 else str(v)) for k, v in e.items() if k != "ctx"} for e in errors]

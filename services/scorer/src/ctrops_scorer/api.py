"""The scorer's internal HTTP API (the gateway proxies it; it is not public).

- ``POST /predict/{run_ref}?model=champion|lstm|gbdt`` with ``{"rows": [{column: value}, ...]}``
  -> ``{"runId", "model", "modelLabel", "rows", "predictions": [{"row", "probability"}], "seconds"}``;
  errors ``{"detail", "problems": [{"row", "column", "message"}]}`` with 404 / 413 / 422 / 503
  (Retry-After) / 500. The work happens in ``online.OnlineScorer`` (worker threads).
- ``GET /healthz`` -> 200.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .online import ApiError, OnlineScorer
from .rows import Problem

MAX_BODY_BYTES = 256 * 1024 * 1024


def create_api(scorer: OnlineScorer) -> FastAPI:
    app = FastAPI(title="ctrops-scorer (internal)", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict/{run_ref}")
    async def predict(run_ref: str, request: Request, model: str = "champion") -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is {int(declared)} bytes; at most {MAX_BODY_BYTES} are read.",
                           [Problem(None, None, "body too large")])
        raw = await request.body()
        body = await scorer.predict(run_ref, model, raw)
        return Response(body, media_type="application/json")

    return app

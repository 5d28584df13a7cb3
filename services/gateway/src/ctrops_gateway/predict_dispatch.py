"""One contract route, two ways to score: a multipart POST /api/predict/{run_id} is a batch job.

The frontend's contract (../shared/spec/api-contract.md) names one route for both: JSON rows are
scored online, a multipart ``file`` (a CSV) becomes a batch job. The gateway serves the two as
separate routes (``/api/predict/{run_id}`` and ``/api/predict/{run_id}/batch``) because they differ
in everything the guards check: body limits (JSON rows vs an upload streamed to disk), the upload
rate limit and concurrency bound, the audit action, the latency alert. This outermost ASGI step
re-targets a multipart POST to the batch route before any guard looks at the path, so every guard,
the router and the OpenAPI description see one consistent route; nothing else is rewritten.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

_ONLINE = re.compile(r"^/api/predict/(?P<run>[^/]+)/?$")


def batch_path(scope: Scope) -> str | None:
    """The batch route's path for a multipart POST /api/predict/{run_id}; None for anything else."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    match = _ONLINE.match(scope.get("path", ""))
    if match is None or match.group("run") == "jobs":
        return None
    content_type = Headers(scope=scope).get("content-type", "").lower()
    if not content_type.startswith("multipart/form-data"):
        return None
    return f"/api/predict/{match.group('run')}/batch"


class PredictDispatch:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = batch_path(scope)
        if path is not None:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)

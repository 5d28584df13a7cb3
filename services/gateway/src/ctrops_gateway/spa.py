"""Serve a built single-page frontend at / when FRONTEND_DIST is set.

Unknown non-API paths fall back to index.html (client-side routing), but API, WebSocket,
docs and metrics paths are never shadowed: those answer 404 JSON when unknown.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

RESERVED = ("api", "ws", "docs", "redoc", "openapi.json", "metrics", "healthz", "readyz")


def mount_frontend(app: FastAPI, dist: Path | None) -> None:
    if dist is None:
        return
    root = dist.resolve()
    index = root / "index.html"
    if not index.is_file():
        raise RuntimeError(f"FRONTEND_DIST={dist} has no index.html; build the frontend or unset FRONTEND_DIST")

    @app.get("/{path:path}", include_in_schema=False)
    async def frontend(path: str) -> FileResponse:
        first = path.split("/", 1)[0]
        if first in RESERVED:
            raise HTTPException(404, f"no such endpoint: /{path}")
        candidate = (root / path).resolve()
        if path and candidate.is_file() and root in candidate.parents:
            return FileResponse(candidate)
        return FileResponse(index)

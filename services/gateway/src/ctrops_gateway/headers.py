"""Security headers on every HTTP response, without breaking the iframe of /docs.

- every response: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``
  (ids in URLs do not leak to other sites), ``Strict-Transport-Security`` when
  CTROPS_HSTS_MAX_AGE_S > 0 (behind TLS only);
- JSON answers (the API): ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``,
  ``X-Frame-Options: DENY`` and ``Cache-Control: no-store`` unless the route set one;
- /docs, /redoc, /openapi.json and the docs' assets under /docs/static (the contract:
  embeddable in an iframe): no X-Frame-Options (it cannot name several origins) and a
  Content-Security-Policy that allows framing by CTROPS_DOCS_FRAME_ANCESTORS or, by default,
  'self' and the CORS origins, and loading from this origin only (Swagger UI's and ReDoc's
  assets are served here, never from a CDN; their inline bootstrap script and styles, ReDoc's
  blob: worker and data: images are allowed);
- anything else (the PDF, the single-page frontend's files) only gets the first group, so
  a browser's PDF viewer and the frontend's own scripts keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .settings import GatewaySettings

DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
DOCS_STATIC = "/docs/static"  # Swagger UI's and ReDoc's files (fastapi-offline), under /docs on purpose
DOCS_SOURCES = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'"
)


def docs_frame_ancestors(settings: GatewaySettings) -> str:
    configured = settings.docs_frame_ancestors.split()
    return " ".join(configured or ["'self'", *settings.cors_origin_list])


def docs_csp(settings: GatewaySettings) -> str:
    return f"{DOCS_SOURCES}; frame-ancestors {docs_frame_ancestors(settings)}"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.docs_csp = docs_csp(settings)
        self.hsts = f"max-age={settings.hsts_max_age_s}" if settings.hsts_max_age_s else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        docs = path == DOCS_PATHS[2] or path.startswith(DOCS_PATHS[:2])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
                if self.hsts:
                    headers.setdefault("strict-transport-security", self.hsts)
                if docs:
                    headers["content-security-policy"] = self.docs_csp
                elif headers.get("content-type", "").startswith("application/json"):
                    headers.setdefault("content-security-policy", "default-src 'none'; frame-ancestors 'none'")
                    headers.setdefault("x-frame-options", "DENY")
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)

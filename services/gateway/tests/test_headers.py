"""Security headers: strict on the JSON API, /docs still embeddable in an iframe, CORS from settings.

The gateway in-process on the in-memory bus: headers are the app's own, no broker is needed."""

from __future__ import annotations

import pytest

from ctrops_gateway.headers import DOCS_SOURCES

pytestmark = pytest.mark.inmemory


def test_api_answers_carry_the_strict_headers(memory_gateway):
    gateway_client = memory_gateway.client
    for response in (gateway_client.get("/api/health"), gateway_client.get("/api/performance/nope"),
                     gateway_client.post("/api/upload")):
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers  # only when configured behind TLS


def test_docs_stay_embeddable_by_the_frontend_origins(memory_gateway):
    gateway_client = memory_gateway.client
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/static/swagger-ui-bundle.js",
                 "/docs/static/swagger-ui.css", "/docs/static/redoc.standalone.js"):
        response = gateway_client.get(path)
        assert response.status_code == 200, path
        assert "x-frame-options" not in response.headers, path
        assert response.headers["content-security-policy"] == (
            f"{DOCS_SOURCES}; frame-ancestors 'self' http://localhost:3000 http://127.0.0.1:3000"), path
        assert response.headers["x-content-type-options"] == "nosniff"
    docs, redoc = gateway_client.get("/docs").text, gateway_client.get("/redoc").text
    # Their scripts and styles come from this origin (the CSP allows no other), never from a CDN.
    assert '<script src="/docs/static/swagger-ui-bundle.js">' in docs and "/docs/static/swagger-ui.css" in docs
    assert '<script src="/docs/static/redoc.standalone.js">' in redoc
    assert "https://" not in docs and "https://" not in redoc


def test_frame_ancestors_and_cors_come_from_configuration_only(memory_gateway_factory):
    with memory_gateway_factory(cors_origins="https://app.example.com",
                                docs_frame_ancestors="https://portal.example.com", hsts_max_age_s=31536000) as gateway:
        client = gateway.client
        docs = client.get("/docs")
        assert docs.headers["content-security-policy"] == f"{DOCS_SOURCES}; frame-ancestors https://portal.example.com"
        assert docs.headers["strict-transport-security"] == "max-age=31536000"
        allowed = client.get("/api/health", headers={"Origin": "https://app.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        refused = client.get("/api/health", headers={"Origin": "http://localhost:3000"})
        assert "access-control-allow-origin" not in refused.headers  # the default is replaced, not added to

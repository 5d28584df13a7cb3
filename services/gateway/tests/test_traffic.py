"""The heartbeat's API p95 (what the response-time alert reads) leaves out the routes that wait
for workers by design (uploads, batch scoring uploads, PDFs); per-route figures keep them."""

from __future__ import annotations

import pytest

from ctrops_gateway.traffic import WAITS_FOR_WORKERS, Traffic


def test_uploads_and_pdfs_do_not_count_toward_the_p95_but_keep_their_route_figures():
    traffic = Traffic()
    for _ in range(95):
        traffic.observe("/api/dashboard/si", 0.020, failed=False)
    for _ in range(5):
        traffic.observe("/api/dashboard/si", 0.040, failed=False)
    for route in ("/api/upload", "/api/predict/{run_id}/batch", "/api/report/pdf/{run_id}",
                  "/api/report/generate-pdf/{run_id}"):
        for _ in range(50):
            traffic.observe(route, 3.451, failed=False)  # the real 60k upload of the issue
    summary = traffic.summary()
    assert summary["latency_p95_ms"] == pytest.approx(20.0 + 0.05 * 20.0, abs=1.0)  # not 3451
    assert summary["latency_by_route_ms"]["/api/upload"] == pytest.approx(3451.0)
    assert summary["latency_by_route_ms"]["/api/predict/{run_id}/batch"] == pytest.approx(3451.0)
    assert summary["requests_total"] == 300
    assert traffic.routes()["/api/report/pdf/{run_id}"]["count"] == 50


def test_online_prediction_and_other_routes_still_count():
    assert "/api/predict/{run_id}" not in WAITS_FOR_WORKERS
    traffic = Traffic()
    for _ in range(10):
        traffic.observe("/api/predict/{run_id}", 0.9, failed=False)
    traffic.observe("/api/upload", 30.0, failed=False)
    assert traffic.summary()["latency_p95_ms"] == pytest.approx(900.0)


def test_only_waiting_routes_in_the_window_give_zero():
    traffic = Traffic()
    traffic.observe("/api/upload", 5.0, failed=False)
    assert traffic.summary()["latency_p95_ms"] == 0.0
    assert traffic.summary()["latency_by_route_ms"] == {"/api/upload": pytest.approx(5000.0)}

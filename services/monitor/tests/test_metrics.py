"""Every service's /metrics parses with the Prometheus text parser and carries the metrics
docs/monitoring.md documents (each worker started once as a real process; the gateway
in-process), and the documentation names no metric the code lacks."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
WORKERS = ["ingest", "trainer", "explainer", "reporter", "monitor"]

# family name (as the parser names it: counters without _total) -> type
COMMON = {
    "ctrops_events_handled": "counter",
    "ctrops_events_published": "counter",
    "ctrops_event_handle_seconds": "histogram",
    "ctrops_events_in_flight": "gauge",
    "ctrops_dead_letters": "counter",
    "ctrops_service_up": "gauge",
    "ctrops_service_ready": "gauge",
}
GATEWAY = {"ctrops_http_requests": "counter", "ctrops_http_request_seconds": "histogram"}
SCORER = {"ctrops_prediction_latency_seconds": "histogram", "ctrops_prediction_rows": "counter"}
MONITOR = {
    "ctrops_model_accuracy_ratio": "gauge",
    "ctrops_model_precision_ratio": "gauge",
    "ctrops_model_recall_ratio": "gauge",
    "ctrops_model_f1_ratio": "gauge",
    "ctrops_model_roc_auc_ratio": "gauge",
    "ctrops_model_average_precision_ratio": "gauge",
    "ctrops_model_log_loss": "gauge",
    "ctrops_model_calibration_ratio": "gauge",
    "ctrops_model_score": "gauge",
    "ctrops_model_last_run_timestamp_seconds": "gauge",
    "ctrops_model_period_auc": "gauge",
    "ctrops_model_period_auc_ci_high": "gauge",
    "ctrops_model_baseline_auc": "gauge",
    "ctrops_model_auc_drop_limit": "gauge",
    "ctrops_model_period_calibration_ratio": "gauge",
    "ctrops_model_period_calibration_ci_low": "gauge",
    "ctrops_model_period_calibration_ci_high": "gauge",
    "ctrops_feature_psi": "gauge",
    "ctrops_training_runs": "counter",
    "ctrops_training_duration_seconds": "histogram",
    "ctrops_training_epochs": "counter",
    "ctrops_training_progress_ratio": "gauge",
    "ctrops_training_epoch_loss": "gauge",
    "ctrops_training_epoch_quality_ratio": "gauge",
    "ctrops_service_alive": "gauge",
    "ctrops_service_instances": "gauge",
    "ctrops_service_heartbeat_age_seconds": "gauge",
    "ctrops_service_cpu_usage_ratio": "gauge",
    "ctrops_service_memory_rss_bytes": "gauge",
    "ctrops_service_errors": "counter",
    "ctrops_system_cpu_usage_ratio": "gauge",
    "ctrops_system_memory_usage_ratio": "gauge",
    "ctrops_api_success_ratio": "gauge",
    "ctrops_api_requests_window": "gauge",
    "ctrops_system_healthy": "gauge",
    "ctrops_alert_active": "gauge",
    "ctrops_alerts_fired": "counter",
    "ctrops_alerts_resolved": "counter",
}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def documented() -> dict[str, str]:
    """metric -> type from the tables of docs/monitoring.md."""
    rows = re.findall(r"^\| `(ctrops_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", (ROOT / "docs" / "monitoring.md")
                      .read_text(), flags=re.MULTILINE)
    return dict(rows)


def parser_name(metric: str, kind: str) -> str:
    return metric.removesuffix("_total") if kind == "counter" else metric


def test_documentation_lists_exactly_the_metrics_checked_here():
    docs = {parser_name(m, k): k for m, k in documented().items()}
    assert docs == {**COMMON, **GATEWAY, **MONITOR, **SCORER}


def test_every_service_serves_the_documented_metrics(start_service, gateway_client):
    processes = {name: start_service(name, wait=False) for name in WORKERS}
    for process in processes.values():
        process.wait_ready(timeout_s=120)

    for name, process in processes.items():
        found = families(fetch(process.port))
        expected = {**COMMON, **(MONITOR if name == "monitor" else {})}
        for metric, kind in expected.items():
            assert metric in found, f"{name} lacks {metric}"
            assert found[metric].type == kind, f"{name}: {metric} is {found[metric].type}, documented {kind}"
        up = {s.labels["service"]: s.value for s in found["ctrops_service_up"].samples}
        assert up == {name: 1.0}
        assert {s.labels["service"]: s.value for s in found["ctrops_service_ready"].samples} == {name: 1.0}
        assert not any(m in found for m in GATEWAY), f"{name} exports the gateway's HTTP metrics"

    # The monitor handles every service's heartbeats: its handler counters and liveness fill in.
    deadline = time.monotonic() + 30
    while True:
        found = families(fetch(processes["monitor"].port))
        alive = {s.labels["service"] for s in found["ctrops_service_alive"].samples if s.value == 1}
        handled = [s for s in found["ctrops_events_handled"].samples
                   if s.name == "ctrops_events_handled_total" and s.labels["outcome"] == "ok"
                   and s.labels["topic"].endswith("service.heartbeat")]
        if set(WORKERS) <= alive and handled:
            break
        assert time.monotonic() < deadline, f"monitor sees {alive}"
        time.sleep(0.5)
    assert all(s.labels["service"] == "monitor" for s in handled) and handled[0].value > 0
    buckets = [s for s in found["ctrops_event_handle_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets and all("le" in s.labels for s in buckets)

    gateway_client.get("/api/health")
    found = families(gateway_client.get("/metrics").text)
    for metric, kind in {**COMMON, **GATEWAY}.items():
        assert found[metric].type == kind, metric
    routes = {s.labels["route"] for s in found["ctrops_http_requests"].samples}
    assert "/api/health" in routes
    assert not any("/" in r and any(c.isdigit() for c in r.split("/")[-1]) for r in routes)  # templates, no ids

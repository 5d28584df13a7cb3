"""Monitor benchmark: cost of the monitor's periodic evaluation, and how long the gateway
takes to build the engineer/marketer dashboards and one /ws/performance tick as the read
model grows (monitor snapshots are stored like every other event: 8,640 a day at the
default 10 s interval).

No broker: the monitor logic and the gateway's view builders run on real SQLite files.
Usage: .venv/bin/python bench/monitor.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import insert

from ctrops_common.db import make_engine
from ctrops_common.events import (
    ModelMetrics,
    Event,
    MonitorAlert,
    ServiceDownEvidence,
    ServiceError,
    ServiceHeartbeat,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    new_id,
)
from ctrops_common.storage import FileStore
from ctrops_gateway import performance_live as live
from ctrops_gateway.routes.dashboards import client_dashboard, si_dashboard
from ctrops_gateway.settings import GatewaySettings
from ctrops_gateway.traffic import Traffic
from ctrops_gateway.views import ReadModel, event_log
from ctrops_monitor.monitor import Monitor
from ctrops_monitor.settings import MonitorSettings
from ctrops_monitor.store import MonitorStore

SERVICES = ["gateway", "ingest", "trainer", "explainer", "reporter", "monitor"]


def timed(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` in ms."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def bench_monitor(tmp: Path) -> dict[str, float]:
    settings = MonitorSettings(data_dir=tmp, monitor_heartbeat_timeout_s=20)
    monitor = Monitor(settings, MonitorStore(make_engine(f"sqlite:///{tmp / 'monitor.sqlite3'}")))
    now = datetime.now(timezone.utc)
    for service in SERVICES:
        for instance in ("a", "b"):
            beat = ServiceHeartbeat(service=service, instance=instance, started_at=now, cpu_percent=5.0,
                                    memory_percent=40.0, rss_bytes=10**8, host_cpu_percent=20.0,
                                    requests_total=100, request_errors_total=1, latency_p95_ms=40.0)
            monitor.on_heartbeat(beat, now)
    beat = ServiceHeartbeat(service="gateway", instance="a", started_at=now, cpu_percent=5.0, memory_percent=40.0,
                            rss_bytes=10**8, requests_total=200, request_errors_total=1, latency_p95_ms=40.0)
    return {
        "heartbeat (stored)": timed(lambda: monitor.on_heartbeat(beat, datetime.now(timezone.utc)), 200),
        "check()": timed(monitor.check, 200),
        "snapshot()": timed(monitor.snapshot, 200),
    }


def _row(topic: Topic, payload, when: datetime, correlation_id: str | None) -> dict:
    return {"event_id": new_id(), "topic": topic.value, "correlation_id": correlation_id, "time": when,
            "payload": payload.model_dump_json()}


def fill(views: ReadModel, snapshots: int, runs: int = 20, epochs: int = 10) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=30)
    rows = []
    for r in range(runs):
        run_id = new_id()
        when = start + timedelta(hours=r)
        metrics = ModelMetrics(train_loss=0.3, val_loss=0.09, train_accuracy=0.9, val_accuracy=0.98, auc=0.72,
                               ap=0.07, logloss=0.09, precision=0.1, recall=0.3, f1=0.15)
        for e in range(1, epochs + 1):
            rows.append(_row(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=e, total_epochs=epochs,
                                                                       metrics=metrics), when, run_id))
        rows.append(_row(Topic.TRAINING_DONE, TrainingDone(
            run_id=run_id, file_id=new_id(), model_location="m", metrics=metrics, best_epoch=epochs,
            epochs_run=epochs, duration_s=300, experiment_name="bench", config=TrainingConfig()), when, run_id))
    for a in range(50):
        for state in ("firing", "resolved"):
            rows.append(_row(Topic.MONITOR_ALERT, MonitorAlert(
                alert_id=f"service_down:trainer:{a}", kind="service_down", subject="trainer", state=state,
                severity="high", message="m",
                metrics=ServiceDownEvidence(service="trainer", last_seen="never", timeout_s=20.0)),
                start + timedelta(minutes=a), None))
    for e in range(200):
        rows.append(_row(Topic.SERVICE_ERROR, ServiceError(service="trainer", message="boom", stack="tb" * 200),
                         start + timedelta(minutes=e), None))
    snapshot = {"run_id": None, "metrics": {"accuracy": 0.98, "response_time": 40.0},
                "health": {"status": "healthy", "cpu_usage": 20.0, "memory_usage": 40.0, "api_success_rate": 99.0,
                           "error_rate": 1.0, "services": {s: {"status": "up"} for s in SERVICES}}}
    text = json.dumps(snapshot)
    for s in range(snapshots):
        rows.append({"event_id": new_id(), "topic": Topic.MONITOR_SNAPSHOT.value, "correlation_id": None,
                     "time": start + timedelta(seconds=10 * s), "payload": text})
    with views.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(event_log), rows[i:i + 5000])
    # The freshest snapshot last, as the monitor would have just sent it.
    views.record(Event(type=Topic.MONITOR_SNAPSHOT, payload=live_snapshot()))


def live_snapshot():
    from ctrops_common.events import MonitorSnapshot

    return MonitorSnapshot(run_id=None, health={"status": "healthy", "response_time_ms": 40.0})


def bench_gateway(tmp: Path, snapshots: int) -> dict[str, float]:
    folder = tmp / f"gw-{snapshots}"
    folder.mkdir()
    views = ReadModel(make_engine(f"sqlite:///{folder / 'gateway.sqlite3'}"))
    fill(views, snapshots)
    traffic = Traffic()
    for i in range(2000):
        traffic.observe(f"/api/route/{i % 12}", 0.004 + (i % 7) / 1000, failed=i % 97 == 0)
    state = SimpleNamespace(views=views, traffic=traffic, settings=GatewaySettings(), store=FileStore(folder / "data"))
    return {
        "GET /api/dashboard/si": timed(lambda: si_dashboard(state), 20),
        "GET /api/dashboard/client": timed(lambda: client_dashboard(state), 20),
        "/ws/performance tick": timed(lambda: live.current_messages(state), 20),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print("monitor logic, 6 services x 2 instances (median ms):")
        for name, ms in bench_monitor(tmp).items():
            print(f"  {name:<22} {ms:8.3f}")
        print("gateway view builders, 20 runs x 10 epochs, 100 alert events, 200 errors (median ms):")
        for snapshots in (0, 8_640, 86_400):
            figures = bench_gateway(tmp, snapshots)
            print(f"  snapshots stored: {snapshots:>6}  " + "  ".join(f"{k} {v:7.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()

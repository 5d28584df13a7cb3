"""The gateway's consumers (consumers.py) on the in-memory bus: each event lands in the read model
once, read back as its topic's model; a redelivered event is neither stored nor pushed again; the
reply a request waits for is resolved; monitor snapshots are pruned to the newest; a gateway started
beside a broker that lost its log requests again what it recorded as open, one started beside the
broker that kept it requests nothing. (The same over Kafka, with broker restarts: test_broker_down.py.)"""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from ctrops_common.events import (
    FileRejected,
    ModelMetrics,
    MonitorAlert,
    MonitorSnapshot,
    ServiceHeartbeat,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingRequested,
    new_id,
    utcnow,
)
from ctrops_gateway.consumers import SNAPSHOTS_KEPT

pytestmark = pytest.mark.inmemory


def done(run_id: str) -> TrainingDone:
    return TrainingDone(run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model",
                        metrics=ModelMetrics(val_accuracy=0.97, auc=0.74, ap=0.08), best_epoch=1, epochs_run=1,
                        duration_s=3.0, experiment_name="exp", config=TrainingConfig(epochs=1))


@pytest.fixture
def fast_ws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTROPS_WS_PERFORMANCE_INTERVAL_S", "0.5")


def duplicates(topic: str) -> float:
    """Deliveries the gateway's bus skipped as already handled (its processed-events record)."""
    return REGISTRY.get_sample_value("ctrops_events_handled_total",
                                     {"service": "gateway", "topic": topic, "outcome": "duplicate"}) or 0.0


def receive_for(ws, seconds: float) -> list[dict]:
    """Every message during ``seconds`` (ticks arrive every 0.5 s, so ``receive_json`` never waits long)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(ws.receive_json())
    return seen


def test_an_event_is_stored_typed_once_and_a_redelivery_is_neither_stored_nor_pushed_again(fast_ws, memory_gateway):
    gw = memory_gateway
    run_id = new_id()
    alert = MonitorAlert(alert_id="model_accuracy:model:1", kind="model_accuracy", subject="model", state="firing",
                         severity="high", message="accuracy 0.5 < 0.7",
                         metrics={"run_id": run_id, "accuracy": 0.5, "valAccuracy": 0.5})
    with gw.client.websocket_connect("/ws/performance") as ws:
        ws.receive_json(), ws.receive_json()  # metrics_update and system_health on connect
        finished, fired = gw.publish((Topic.TRAINING_DONE, done(run_id), run_id), (Topic.MONITOR_ALERT, alert, None))
        # settled: the read model has both at once, no polling
        stored = gw.state.views.latest(Topic.TRAINING_DONE, correlation_id=run_id)
        assert stored.event_id == finished.event_id and isinstance(stored.payload, TrainingDone)
        assert stored.payload == finished.payload and stored.payload is not finished.payload
        assert gw.client.get(f"/api/performance/{run_id}").json()["auc"] == pytest.approx(0.74)

        skipped_before = duplicates("monitor.alert") + duplicates("training.done")
        gw.broker.redeliver(fired)  # the same event again, as after a crash before the commit
        gw.broker.redeliver(finished)
        gw.settle()
        assert duplicates("monitor.alert") + duplicates("training.done") == skipped_before + 2  # by the bus
        pushed = [m for m in receive_for(ws, 1.5) if m["type"] == "performance_alert"]
    assert [m["alert_id"] for m in pushed] == ["model_accuracy:model:1"]
    assert [e.event_id for e in gw.state.views.events(Topic.MONITOR_ALERT)] == [fired.event_id]
    assert [e.event_id for e in gw.state.views.events(Topic.TRAINING_DONE)] == [finished.event_id]
    runtime = gw.state.runtime
    assert runtime.processed.seen(runtime.bus.group_id, fired.event_id)


def test_a_waiting_request_is_answered_by_the_reply_event(memory_gateway):
    gw = memory_gateway
    file_id = new_id()
    key = f"upload:{file_id}"

    async def expect():
        return gw.state.replies.expect(key)

    future = gw.client.portal.call(expect)  # what POST /api/upload does before it publishes
    [sent] = gw.publish((Topic.FILE_REJECTED, FileRejected(file_id=file_id, filename="a.csv", status_code=400,
                                                          message="not a CSV"), file_id))

    async def wait():
        return await gw.state.replies.wait(key, future, 5)

    reply = gw.client.portal.call(wait)
    assert reply.event_id == sent.event_id and isinstance(reply.payload, FileRejected)
    assert reply.payload.message == "not a CSV" and reply.payload is not sent.payload


def test_only_the_newest_monitor_snapshots_are_kept_and_heartbeats_are_recorded(memory_gateway):
    gw = memory_gateway
    snapshots = [(Topic.MONITOR_SNAPSHOT, MonitorSnapshot(run_id=str(i)), None) for i in range(SNAPSHOTS_KEPT + 5)]
    beat = ServiceHeartbeat(service="scorer", instance="s1", started_at=utcnow(), cpu_percent=3.0,
                            memory_percent=9.0, rss_bytes=1 << 28)
    gw.publish(*snapshots, (Topic.SERVICE_HEARTBEAT, beat, None))
    kept = gw.state.views.events(Topic.MONITOR_SNAPSHOT)
    assert len(kept) == SNAPSHOTS_KEPT and all(isinstance(e.payload, MonitorSnapshot) for e in kept)
    assert gw.state.views.latest(Topic.MONITOR_SNAPSHOT).payload.run_id == str(SNAPSHOTS_KEPT + 4)
    assert any(b.beat.service == "scorer" and b.beat.instance == "s1" for b in gw.state.views.heartbeats())


def test_heartbeats_are_not_remembered_and_a_replayed_older_one_changes_nothing(memory_gateway):
    """The bus keeps no processed-events record of heartbeats (a row per beat and group otherwise); the
    read model keeps the newest heartbeat of each instance, so a redelivery cannot move it back."""
    gw = memory_gateway
    skipped_before = duplicates("service.heartbeat")

    def beat(cpu: float) -> ServiceHeartbeat:
        return ServiceHeartbeat(service="scorer", instance="s1", started_at=utcnow(), cpu_percent=cpu,
                                memory_percent=9.0, rss_bytes=1 << 28)

    [older] = gw.publish((Topic.SERVICE_HEARTBEAT, beat(3.0), None))
    [newer] = gw.publish((Topic.SERVICE_HEARTBEAT, beat(5.0), None))
    assert newer.time > older.time
    processed = gw.state.bus.processed
    assert not processed.seen(gw.state.bus.group_id, older.event_id)
    assert not processed.seen(gw.state.bus.group_id, newer.event_id)
    gw.broker.redeliver(newer)  # handled again (nothing skips it), and ignored as no newer than the one kept
    gw.broker.redeliver(older)  # and as older
    gw.settle()
    [kept] = [b for b in gw.state.views.heartbeats() if b.beat.instance == "s1"]
    assert kept.beat.cpu_percent == 5.0 and kept.seen_at == newer.time
    assert duplicates("service.heartbeat") == skipped_before  # not skipped by a record: there is none
    again = type(gw.state.views)(gw.state.views.engine)  # what a restarted gateway reads from the database
    [stored] = [b for b in again.heartbeats() if b.beat.instance == "s1"]
    assert stored.beat.cpu_percent == 5.0 and stored.seen_at == newer.time


def test_a_gateway_started_beside_a_broker_that_lost_its_log_requests_the_open_run_again(memory_gateway_factory):
    """Three lives of the gateway on one database: the first records a requested run; the second starts
    beside a new, empty broker (a memory-only broker started again) and requests the run again, once;
    the third starts beside that broker, which kept its log, and requests nothing."""
    from ctrops_common.memory_bus import InMemoryBroker

    run_id = new_id()
    requested = TrainingRequested(run_id=run_id, file_id=new_id(), parquet_location="files/x/data.parquet",
                                  config=TrainingConfig(epochs=1))
    with memory_gateway_factory() as gw:
        [original] = gw.publish((Topic.TRAINING_REQUESTED, requested, run_id))
        assert gw.state.views.latest(Topic.TRAINING_REQUESTED, correlation_id=run_id) is not None

    def requests(broker: InMemoryBroker) -> list:
        return [e for e in broker.events(Topic.TRAINING_REQUESTED) if e.correlation_id == run_id]

    lost = InMemoryBroker()
    with memory_gateway_factory(lost) as gw:
        deadline = time.monotonic() + 10
        while not requests(lost):
            assert time.monotonic() < deadline, "the open run was not requested again"
            time.sleep(0.05)
        time.sleep(1.5)  # a second look (every second) must not request it again
        [again] = requests(lost)
    assert again.producer == "gateway" and again.payload == requested and again.event_id != original.event_id

    with memory_gateway_factory(lost) as gw:
        time.sleep(1.5)
        assert len(requests(lost)) == 1

"""Event schemas: the envelope round-trips, training config accepts both spellings, an alert's evidence
is the model of its kind and a preview row's values are typed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import get_args

import pytest
from pydantic import TypeAdapter, ValidationError

from ctrops_common.events import (
    EVIDENCE,
    AlertEvidence,
    AlertKind,
    Event,
    ModelAccuracyEvidence,
    ModelMetrics,
    MonitorAlert,
    PreviewRow,
    Probe,
    ResponseTimeEvidence,
    Topic,
    TrainingConfig,
    decode_event,
)


def test_envelope_round_trip():
    event = Event(type=Topic.PROBE, payload=Probe(probe_id="p", sent_at=1.0), correlation_id="r1", producer="t")
    back = decode_event("bus.probe", event.to_bytes())
    assert back.payload == event.payload and back.event_id == event.event_id
    assert back.schema_version == 1 and back.correlation_id == "r1"


def test_decode_refuses_a_payload_that_does_not_match_its_topic():
    event = Event(type=Topic.PROBE, payload=Probe(probe_id="p", sent_at=1.0))
    with pytest.raises(ValidationError):
        decode_event("training.progress", event.to_bytes())


def test_training_config_accepts_camel_and_snake_case_and_ignores_unknown_keys():
    camel = TrainingConfig.model_validate(
        {"epochs": 3, "batchSize": 1024, "learningRate": 0.01, "lstmHidden": 32, "mlpHidden": "64, 32",
         "validationSplit": 0.15000000000000002, "downsampling": False, "notifications": ["email"], "theme": "dark"}
    )
    snake = TrainingConfig.model_validate(
        {"epochs": 3, "batch_size": 1024, "learning_rate": 0.01, "lstm_hidden": 32, "mlp_hidden": [64, 32],
         "validation_split": 0.15000000000000002, "downsampling": False, "notifications": ["email"]}
    )
    assert camel.model_dump(exclude={"experiment_name"}) == snake.model_dump(exclude={"experiment_name"})
    assert camel.mlp_hidden == [64, 32] and camel.batch_size == 1024
    assert TrainingConfig().experiment_name.startswith("CTR_Experiment_")


@pytest.mark.parametrize(
    "bad, field",
    [({"epochs": 0}, "epochs"), ({"epochs": 500}, "epochs"), ({"dropout": 0.95}, "dropout"),
     ({"validationSplit": 0.9}, "validationSplit"), ({"mlpHidden": "256,abc"}, "mlpHidden"),
     ({"learningRate": -1}, "learningRate")],
)
def test_training_config_refuses_out_of_range_values(bad, field):
    with pytest.raises(ValidationError) as err:
        TrainingConfig.model_validate(bad)
    assert field in str(err.value)


# -- an alert's evidence: the model of its kind ---------------------------------------------------


def _alert(kind: str, metrics: object) -> dict:
    return {"alert_id": f"{kind}:x:1", "kind": kind, "subject": "x", "state": "firing", "severity": "high",
            "message": "m", "metrics": metrics}


RESPONSE_TIME = {"response_time": 900.0, "threshold_ms": 500.0}
SERVICE_DOWN = {"service": "trainer", "last_seen": "never", "timeout_s": 20.0}


def test_every_alert_kind_has_its_evidence_model():
    assert set(EVIDENCE) == set(get_args(AlertKind))
    assert set(EVIDENCE.values()) == set(get_args(AlertEvidence))
    assert MonitorAlert.model_fields["metrics"].is_required()


def test_an_alert_whose_evidence_does_not_fit_its_kind_is_refused():
    assert isinstance(MonitorAlert.model_validate(_alert("response_time", RESPONSE_TIME)).metrics,
                      ResponseTimeEvidence)
    with pytest.raises(ValidationError, match="service_down alert's evidence is a ServiceDownEvidence"):
        MonitorAlert.model_validate(_alert("service_down", RESPONSE_TIME))  # another kind's keys
    with pytest.raises(ValidationError, match="not a ResponseTimeEvidence"):
        MonitorAlert.model_validate(_alert("service_down", ResponseTimeEvidence(**RESPONSE_TIME)))
    with pytest.raises(ValidationError, match="timeout_s"):
        MonitorAlert.model_validate(_alert("service_down", {k: v for k, v in SERVICE_DOWN.items() if k != "timeout_s"}))
    with pytest.raises(ValidationError, match="metrics"):
        MonitorAlert.model_validate({k: v for k, v in _alert("service_down", SERVICE_DOWN).items() if k != "metrics"})
    with pytest.raises(ValidationError, match="differs from another spelling"):  # copies of one metric must agree
        MonitorAlert.model_validate(_alert("model_accuracy", {"run_id": "r", "val_accuracy": 0.6, "accuracy": 0.9}))
    # On the wire: a response_time alert relabelled service_down does not decode.
    good = Event(type=Topic.MONITOR_ALERT, payload=MonitorAlert.model_validate(_alert("response_time", RESPONSE_TIME)))
    wire = json.loads(good.to_bytes())
    assert isinstance(decode_event("monitor.alert", json.dumps(wire).encode()).payload.metrics, ResponseTimeEvidence)
    wire["payload"]["kind"] = "service_down"
    with pytest.raises(ValidationError, match="ServiceDownEvidence"):
        decode_event("monitor.alert", json.dumps(wire).encode())


def test_model_accuracy_evidence_is_flat_on_the_wire_and_one_model_metrics_in_python():
    metrics = ModelMetrics(val_accuracy=0.6, auc=0.7, f1=0.2, threshold=0.3)
    alert = MonitorAlert.model_validate(_alert("model_accuracy", {"run_id": "r", **metrics.both_spellings()}))
    evidence = alert.metrics
    assert isinstance(evidence, ModelAccuracyEvidence) and evidence.quality == metrics and evidence.run_id == "r"
    assert evidence.model_dump(mode="json") == {"run_id": "r", **metrics.both_spellings()}
    assert ModelAccuracyEvidence(run_id="r", quality=metrics) == evidence
    back = decode_event("monitor.alert", Event(type=Topic.MONITOR_ALERT, payload=alert).to_bytes()).payload
    assert back == alert


def test_preview_rows_keep_each_cells_type_and_refuse_other_values():
    rows = [{"hour": 14, "price": 0.25, "seq": "1,2", "device": None}]
    uploaded = TypeAdapter(list[PreviewRow])
    back = uploaded.validate_json(json.dumps(rows))
    assert back == rows and [type(v) for v in back[0].values()] == [int, float, str, type(None)]
    for bad in ({"seq": [1, 2]}, {"x": {"a": 1}}, {"when": datetime(2026, 1, 1)}):
        with pytest.raises(ValidationError):
            uploaded.validate_python([bad])

"""Event schemas: the envelope round-trips, training config accepts both spellings and a preview row's
values are typed."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from ctrops_common.events import Event, PreviewRow, Probe, Topic, TrainingConfig, decode_event


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


def test_preview_rows_keep_each_cells_type_and_refuse_other_values():
    rows = [{"hour": 14, "price": 0.25, "seq": "1,2", "device": None}]
    uploaded = TypeAdapter(list[PreviewRow])
    back = uploaded.validate_json(json.dumps(rows))
    assert back == rows and [type(v) for v in back[0].values()] == [int, float, str, type(None)]
    for bad in ({"seq": [1, 2]}, {"x": {"a": 1}}, {"when": datetime(2026, 1, 1)}):
        with pytest.raises(ValidationError):
            uploaded.validate_python([bad])

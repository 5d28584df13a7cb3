"""docs/asyncapi.yaml is the AsyncAPI 3.0.0 description of the code's events: current (regenerated
here from the models and compared), one channel per topic carrying the envelope with that topic's
payload schema, every reference resolvable, and real events valid against their schema."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ctrops_common.event_catalogue import ROUTES, expand
from ctrops_common.events import (
    TOPIC_PAYLOADS, DeadLetter, Event, MonitorAlert, Probe, ServiceHeartbeat, Topic, TrainingConfig,
    TrainingRequested,
)
from ctrops_common.service import PLATFORM_SERVICES
from ctrops_common.testing import load_script

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "asyncapi.yaml"


def _script():
    return load_script(ROOT / "scripts" / "asyncapi.py")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text())


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_docs_asyncapi_yaml_is_current():
    assert _script().render() == DOC.read_text(), "run: .venv/bin/python scripts/asyncapi.py"


def test_asyncapi_3_structure(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"] == "1"
    assert set(doc) >= {"asyncapi", "info", "servers", "channels", "operations", "components"}
    assert {name: s["protocol"] for name, s in doc["servers"].items()} == {"kafka": "kafka", "tansu": "kafka"}
    for name, server in doc["servers"].items():
        assert ":" in server["host"] and "://" not in server["host"], f"server {name}: host is host:port"
    for cid, channel in doc["channels"].items():
        assert set(channel) >= {"address", "messages"}, cid
    for oid, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), oid
        assert op["channel"]["$ref"].startswith("#/channels/"), oid
        channel_ref = op["channel"]["$ref"]
        for message in op["messages"]:  # AsyncAPI 3: an operation's messages are its channel's
            assert message["$ref"].startswith(channel_ref + "/messages/"), oid
    for kind in ("schemas", "messages"):
        for key in doc["components"][kind]:
            assert all(c.isalnum() or c in "._-" for c in key), f"components/{kind} key {key!r}"
    unresolved = []
    for ref in refs(doc):
        try:
            resolve(doc, ref)
        except AssertionError as e:
            unresolved.append(str(e))
    assert not unresolved, unresolved


def test_one_channel_per_topic_with_the_payload_models_fields(doc):
    by_address = {c["address"]: c for c in doc["channels"].values()}
    assert set(by_address) == {t.value for t in Topic}
    for topic in Topic:
        payload_cls = TOPIC_PAYLOADS[topic]
        channel = by_address[topic.value]
        assert "CTROPS_TOPIC_PREFIX" in channel["description"], topic.value
        (message_ref,) = [m["$ref"] for m in channel["messages"].values()]
        envelope = resolve(doc, resolve(doc, message_ref)["payload"]["$ref"])
        assert set(envelope["required"]) >= {"type", "payload"}
        assert set(envelope["properties"]) == set(Event.model_fields), topic.value
        assert envelope["properties"]["type"]["const"] == topic.value
        payload = resolve(doc, envelope["properties"]["payload"]["$ref"])
        required = {name for name, f in payload_cls.model_fields.items() if f.is_required()}
        assert set(payload.get("required", [])) >= required, topic.value
        assert set(payload["properties"]) == set(payload_cls.model_fields), topic.value


def test_operations_follow_the_catalogue(doc):
    found = {(op["action"], op["tags"][0]["name"], resolve(doc, op["channel"]["$ref"])["address"])
             for op in doc["operations"].values()}
    expected = {(action, party, topic.value) for topic, route in ROUTES.items()
                for action, parties in (("send", route.producers), ("receive", route.consumers))
                for party in expand(parties)}
    assert found == expected
    assert ("send", "gateway", "upload.received") in found and ("receive", "ingest", "upload.received") in found
    # "every service" stands for each of them: all seven send heartbeats
    assert {p for a, p, t in found if t == "service.heartbeat" and a == "send"} == set(PLATFORM_SERVICES)
    # the dead letters come from every service that consumes something: here, all of them
    assert {p for a, p, t in found if t == "dead.letter" and a == "send"} == set(PLATFORM_SERVICES)


def _validate(doc: dict[str, Any], event: Event[Any]) -> None:
    channel = next(c for c in doc["channels"].values() if c["address"] == event.type.value)
    (message_ref,) = [m["$ref"] for m in channel["messages"].values()]
    schema = {**resolve(doc, resolve(doc, message_ref)["payload"]["$ref"]), "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(event.to_bytes()))


def test_real_events_validate_against_their_channel_schema(doc):
    now = datetime.now(timezone.utc)
    events = [
        Event(type=Topic.PROBE, payload=Probe(probe_id="p1", sent_at=1.5), correlation_id="p1", producer="tests"),
        Event(type=Topic.TRAINING_REQUESTED, producer="gateway", correlation_id="r1", payload=TrainingRequested(
            run_id="r1", file_id="f1", parquet_location="files/f1/data.parquet",
            config=TrainingConfig.model_validate({"epochs": 3, "batchSize": 256}))),
        Event(type=Topic.SERVICE_HEARTBEAT, producer="scorer", payload=ServiceHeartbeat(
            service="scorer", instance="i", started_at=now, cpu_percent=1.0, memory_percent=2.0, rss_bytes=3)),
        Event(type=Topic.MONITOR_ALERT, producer="monitor", payload=MonitorAlert(
            alert_id="auc_drop:model:1", kind="auc_drop", subject="model", state="firing", severity="high",
            message="m", metrics={"period": "2026-03", "period_id": "r1:gbdt:2026-03", "run_id": "r1",
                                  "model_kind": "gbdt", "rows": 900, "auc": 0.61, "auc_ci_low": 0.58,
                                  "auc_ci_high": 0.64, "baseline_auc": 0.8, "baseline_auc_ci_low": None,
                                  "auc_drop_limit": 0.75, "estimated_auc": None})),
        Event(type=Topic.MONITOR_ALERT, producer="monitor", payload=MonitorAlert(
            alert_id="model_accuracy:model:1", kind="model_accuracy", subject="model", state="firing",
            severity="high", message="m", metrics={"run_id": "r1", "accuracy": 0.6, "auc": 0.7})),
        Event(type=Topic.DEAD_LETTER, producer="ingest", payload=DeadLetter(
            topic="upload.received", partition=0, offset=1, key=None, value="{}", error="e", attempts=3, group="g")),
    ]
    for event in events:
        _validate(doc, event)
    # and the schema bites: a payload without a required field, or on the wrong topic, is invalid
    bad = yaml.safe_load(events[0].to_bytes())
    del bad["payload"]["probe_id"]
    with pytest.raises(jsonschema.ValidationError, match="probe_id"):
        jsonschema.Draft202012Validator({**resolve(doc, "#/components/schemas/ProbeEvent"),
                                         "components": doc["components"]}).validate(bad)
    wrong = yaml.safe_load(events[0].to_bytes())
    wrong["type"] = "bus.probe.reply"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator({**resolve(doc, "#/components/schemas/ProbeEvent"),
                                         "components": doc["components"]}).validate(wrong)
    # an alert's evidence is its kind's: an auc_drop alert's evidence under kind service_down is invalid
    alert = next(e for e in events if e.type == Topic.MONITOR_ALERT)
    relabelled = yaml.safe_load(alert.to_bytes())
    relabelled["payload"]["kind"] = "service_down"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator({**resolve(doc, "#/components/schemas/MonitorAlertEvent"),
                                         "components": doc["components"]}).validate(relabelled)

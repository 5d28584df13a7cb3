"""The kube-prometheus objects of deploy/k8s/components/prometheus-operator (in overlays/prod):
a ServiceMonitor that scrapes every service under the job names the rules use, and a
PrometheusRule whose groups are exactly deploy/prometheus/rules (generated from it), both
valid against the Prometheus Operator's CRD schemas vendored in tests/deploy/schemas."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ctrops_common.service import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "ctrops.rules.yml"
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def schema(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind.lower()}_monitoring.coreos.com_v1.json").read_text())


def one(docs: list[dict], kind: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def selects(selector: dict, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def test_prod_carries_a_service_monitor_and_rules_valid_for_the_operator(kit) -> None:
    docs = kit.render("overlays/prod")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        doc = one(docs, kind)
        jsonschema.validate(doc, schema(kind))
        assert doc["metadata"]["namespace"] == "ctrops"


def test_the_vendored_schemas_are_strict() -> None:
    rule = yaml.safe_load((ROOT / "deploy/k8s/components/prometheus-operator/prometheusrule.yaml").read_text())
    monitor = yaml.safe_load((ROOT / "deploy/k8s/components/prometheus-operator/servicemonitor.yaml").read_text())
    jsonschema.validate(rule, schema("PrometheusRule"))
    jsonschema.validate(monitor, schema("ServiceMonitor"))
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["endpoints"][0]["intervall"] = "15s"
    bad_duration = copy.deepcopy(rule)
    bad_duration["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    unknown_rule_field = copy.deepcopy(rule)
    unknown_rule_field["spec"]["groups"][0]["rules"][0]["severity"] = "critical"
    for broken, kind in ((misspelt, "ServiceMonitor"), (bad_duration, "PrometheusRule"),
                         (unknown_rule_field, "PrometheusRule")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema(kind))


def test_the_prometheus_rule_is_the_rule_file() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"]
    generated = yaml.safe_load((ROOT / "deploy/k8s/components/prometheus-operator/prometheusrule.yaml").read_text())
    assert generated["spec"]["groups"] == rules, "run: python scripts/prometheus_rule.py"
    spec = importlib.util.spec_from_file_location("prometheus_rule", ROOT / "scripts" / "prometheus_rule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == module.TARGET.read_text(), "run: python scripts/prometheus_rule.py"


def test_the_rendered_rule_keeps_every_alert_of_the_file(kit) -> None:
    rendered = one(kit.render("overlays/prod"), "PrometheusRule")["spec"]["groups"]
    assert rendered == yaml.safe_load(RULES.read_text())["groups"]


def test_the_service_monitor_scrapes_every_service_under_its_compose_job_name(kit) -> None:
    docs = kit.render("overlays/prod")
    monitor = one(docs, "ServiceMonitor")["spec"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["path"] == "/metrics"
    scraped = {}
    for service in (d for d in docs if d["kind"] == "Service"):
        labels = service["metadata"]["labels"]
        if selects(monitor["selector"], labels):
            ports = {p["name"]: p for p in service["spec"]["ports"]}
            assert endpoint["port"] in ports, service["metadata"]["name"]
            scraped[labels[monitor["jobLabel"]]] = ports[endpoint["port"]]["port"]
    # job = the Service's app.kubernetes.io/name: the same jobs as compose and the rules.
    assert scraped == DEFAULT_PORTS
    assert not monitor.get("namespaceSelector"), "the ServiceMonitor watches its own namespace"

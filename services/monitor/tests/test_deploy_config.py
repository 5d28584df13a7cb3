"""deploy/prometheus and deploy/grafana are right by construction: promtool accepts the
configs and rules, the rule unit tests pass, every query is valid PromQL and names only
metrics the services really export, and the thresholds match the monitor's defaults."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
RULES = PROMETHEUS / "rules" / "ctrops.rules.yml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")


# Series Prometheus makes itself, not the services.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def exported_series() -> set[str]:
    """Every series name the platform's code registers, as Prometheus stores it."""
    import ctrops_common.observability  # noqa: F401 - every service
    import ctrops_gateway.app  # noqa: F401 - HTTP metrics
    import ctrops_monitor.metrics  # noqa: F401 - monitor gauges
    import ctrops_scorer.metrics  # noqa: F401 - serving latency and rows scored

    names: set[str] = set()
    for family in REGISTRY.collect():  # families appear even before any labelled child exists
        if not family.name.startswith("ctrops_"):
            continue
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords, labels and durations removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the exponent of a number such as 1e3
        if text[match.end():].lstrip().startswith("(") or match.group(0).lower() in KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # `make install` installs it (Debian package prometheus); missing, the check fails, never skips.
    assert PROMTOOL is not None, "promtool missing: run `make install` or apt-get install prometheus"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_metric_name_extraction_sees_through_promql():
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(ctrops_http_request_seconds_bucket'
            '{route!~"/metrics|/x"}[5m]))) > 1e3 or absent(up{job="monitor"} == 1) / on (kind) ctrops_alert_active')
    assert metric_names(expr) == {"ctrops_http_request_seconds_bucket", "up", "ctrops_alert_active"}


def test_rules_and_dashboards_name_only_exported_metrics():
    exported = exported_series()
    assert {"ctrops_events_handled_total", "ctrops_http_request_seconds_bucket", "ctrops_alert_active",
            "ctrops_model_accuracy_ratio", "ctrops_model_roc_auc_ratio"} <= exported
    for alert, expr in rule_exprs().items():
        names = metric_names(expr)
        assert names, alert
        assert names <= exported | SYNTHETIC, f"{alert} uses unknown metrics {names - exported - SYNTHETIC}"
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    for board, title, expr in exprs:
        names = metric_names(expr)
        assert names and names <= exported | SYNTHETIC, f"{board} / {title}: unknown {names - exported - SYNTHETIC}"
    used = set().union(*(metric_names(e) for e in rule_exprs().values()), *(metric_names(e) for *_, e in exprs))
    # Every monitor gauge is on some dashboard or rule (nothing exported in vain).
    monitor_only = {n for n in exported if n.startswith(("ctrops_model", "ctrops_training", "ctrops_alert",
                                                         "ctrops_system", "ctrops_api"))}
    assert monitor_only - used - {"ctrops_training_duration_seconds_sum", "ctrops_training_duration_seconds_count",
                                  "ctrops_api_requests_window"} == set()


def test_rule_thresholds_match_the_monitor_defaults():
    from ctrops_monitor.settings import MonitorSettings

    defaults = MonitorSettings()
    exprs = rule_exprs()
    assert re.search(rf"<\s*{defaults.monitor_accuracy_threshold}\b", exprs["CtropsModelAccuracyLow"])
    assert re.search(rf">\s*{defaults.monitor_response_time_ms / 1000}\s*$", exprs["CtropsApiSlow"])
    assert re.search(rf">\s*{defaults.monitor_error_rate_percent / 100}\s*$", exprs["CtropsApiErrorRate"])
    calibration = exprs["CtropsModelCalibrationOutOfBand"]
    assert re.search(rf"ctrops_model_period_calibration_ratio\s*<\s*{defaults.monitor_calibration_low}\b", calibration)
    assert re.search(rf"ctrops_model_period_calibration_ratio\s*>\s*{defaults.monitor_calibration_high}\b", calibration)
    assert re.search(rf">\s*{defaults.monitor_drift_psi}\s*$", exprs["CtropsFeatureDrift"])
    # The routes the gateway's heartbeat p95 leaves out are left out of the Prometheus p95 too.
    from ctrops_gateway.traffic import WAITS_FOR_WORKERS

    excluded = re.search(r'route!~"([^"]+)"', exprs["CtropsApiSlow"]).group(1)
    for route in WAITS_FOR_WORKERS:
        assert re.fullmatch(excluded, route), route
    for route in ("/api/predict/{run_id}", "/api/dashboard/si", "/api/predict/jobs/{job_id}"):
        assert not re.fullmatch(excluded, route), route


def test_compose_scrapes_every_service_on_its_default_port():
    from ctrops_common.service import DEFAULT_PORTS

    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for service, port in DEFAULT_PORTS.items():
        assert jobs[service] == [f"{service}:{port}"], service
    service_job = next(j for r in rule_exprs().values() for j in re.findall(r'job=~"([^"]+)"', r))
    assert set(service_job.split("|")) == set(DEFAULT_PORTS)


def test_kubernetes_config_discovers_annotated_pods_and_names_jobs_by_app():
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabel = {tuple(r.get("source_labels", [])): r for r in job["relabel_configs"]}
    keep = relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]
    assert (keep["action"], keep["regex"]) == ("keep", "true")
    assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["target_label"] == "job"
    port = relabel[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert re.sub(port["regex"], port["replacement"].replace("$", "\\"), "10.0.0.7:8080;8101") == "10.0.0.7:8101"
    assert config["rule_files"] == ["rules/*.yml"]


def test_promtool_accepts_both_configs(tmp_path: Path):
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    # Debian's promtool is built without Kubernetes discovery: swap it for a static target
    # so everything else (relabelling regexes, rule files) is still checked for real.
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["10.0.0.7:8101"]}]
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "rules" / RULES.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_and_unit_tests_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0 and "13 rules found" in result.stdout, result.stdout + result.stderr
    result = promtool("test", "rules", str(PROMETHEUS / "tests" / "ctrops.rules.test.yml"))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    exprs = dashboard_exprs()
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_and_dashboards_fit_together():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://prometheus:9090")
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ctrops.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    assert {p.stem for p in DASHBOARDS} == {"ctrops-model", "ctrops-services", "ctrops-alerts"}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids and board["title"].startswith("CTR AIOps")
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
            assert panel["targets"] and all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
    titles = {json.loads(p.read_text())["uid"]: [x["title"] for x in json.loads(p.read_text())["panels"]]
              for p in DASHBOARDS}
    assert any("AUC" in t for t in titles["ctrops-model"]) and any("progress" in t.lower() for t in titles["ctrops-model"])
    assert {"Traffic", "Errors", "Latency", "Saturation"} <= set(titles["ctrops-services"])


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_has_a_standard_severity_and_a_runbook_section():
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^## (.+)$", runbooks, flags=re.MULTILINE)}
    for rule in rules():
        severity = rule["labels"]["severity"]
        assert severity in ("critical", "warning") or re.fullmatch(
            r'\{\{ if .* \}\}(critical|warning)\{\{ else \}\}(critical|warning)\{\{ end \}\}', severity
        ), (rule["alert"], severity)
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{rule['alert'].lower()}", rule["alert"]
        assert url.split("#")[1] in anchors, f"docs/runbooks.md has no section for {rule['alert']}"
    assert len(anchors) == len(rules())  # and no runbook of an alert that is gone


def test_the_first_dead_letter_fires_the_alert(tmp_path: Path):
    """What a service really exports, fed to promtool: 0 at start, 1 after one dead letter."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ctrops_common.bus import Bus
    from ctrops_common.events import Topic
    from ctrops_common.observability import DEAD_LETTERS
    from ctrops_common.settings import CommonSettings

    def exported() -> float | None:
        for family in text_string_to_metric_families(generate_latest().decode()):
            for s in family.samples:
                if s.name == "ctrops_dead_letters_total" and s.labels == {"service": "dl-test", "topic": "report.requested"}:
                    return s.value
        return None

    bus = Bus(CommonSettings(topic_prefix="t1."), "dl-test")
    assert exported() is None
    bus.subscribe(Topic.REPORT_REQUESTED, lambda event: None)  # what a service does at start
    at_start = exported()
    assert at_start == 0.0
    DEAD_LETTERS.labels("dl-test", "report.requested").inc()  # what Bus._dead_letter does
    after = exported()
    assert after == 1.0

    series = 'ctrops_dead_letters_total{service="dl-test", topic="report.requested", job="dl", instance="dl:1"}'
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series, "values": f"{at_start:g} {at_start:g} {after:g} {after:g}"}],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "CtropsDeadLetters", "exp_alerts": []},
                {"eval_time": "2m", "alertname": "CtropsDeadLetters", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "service": "dl-test", "topic": "report.requested"},
                    "exp_annotations": {
                        "summary": "dl-test dead-lettered events of report.requested",
                        "description": "Events failed every retry and went to dead.letter; read them there and fix the cause.",
                        "runbook_url": "docs/runbooks.md#ctropsdeadletters",
                    },
                }]},
            ],
        }],
    }
    path = tmp_path / "first-dead-letter.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr

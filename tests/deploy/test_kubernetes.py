"""deploy/k8s rendered by a real kustomize (kubectl's), validated against the Kubernetes
OpenAPI schemas in strict mode (kubernetes-validate), and cross-checked with the code: the
settings classes, the ports the services bind, the topic catalogue, the Dockerfiles."""

from __future__ import annotations

import math
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from ctrops_common.events import Topic

ROOT = Path(__file__).resolve().parents[2]
# The oldest Kubernetes we support (docs/deploy.md) and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.29", latest_version()]

# Strimzi's KafkaTopic is a custom resource: kubernetes-validate has no schema for it, so it
# is checked against this transcription of the fields we use from Strimzi's v1beta2 CRD
# (strict, like the rest: an unknown field fails).
KAFKA_TOPIC_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "required": ["strimzi.io/cluster"],
                           "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}},
            },
        },
    },
}


# Other custom resources: a strict JSON schema per kind, vendored in tests/deploy/schemas as
# <kind>_<group>_<version>.json (lower-case kind), e.g. scaledobject_keda.sh_v1alpha1.json.
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def vendored_schema(doc: dict) -> Path:
    group, _, version = doc["apiVersion"].rpartition("/")
    return SCHEMAS / f"{doc['kind'].lower()}_{group}_{version}.json"


def validate(doc: dict, version: str) -> None:
    if doc["kind"] == "KafkaTopic":
        jsonschema.validate(doc, KAFKA_TOPIC_SCHEMA)
    elif vendored_schema(doc).is_file():
        import json

        jsonschema.validate(doc, json.loads(vendored_schema(doc).read_text()))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+)([KMGT]i)?", quantity)
    assert match, quantity
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def common_config(docs: list[dict]) -> dict[str, str]:
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("ctrops-common")]
    return config["data"]


# --- rendering and schema validation -----------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_renders_and_validates_strictly(kit, overlay: str, version: str) -> None:
    docs = kit.render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "PersistentVolumeClaim"} <= kinds
    for doc in docs:
        try:
            validate(doc, version)
        except (jsonschema.ValidationError, SchemaNotFoundError) as error:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: "
                        f"{getattr(error, 'message', error)} at {'.'.join(map(str, getattr(error, 'path', [])))}")


def test_strict_validation_rejects_what_kubernetes_would(kit) -> None:
    """The validation above is not vacuous: an unknown field, a wrong type and an unknown kind fail."""
    import copy

    deployment = by_kind(kit.render("base"), "Deployment")["ctrops-ingest"]
    validate(deployment, latest_version())
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    for broken in (misspelt, wrong_type):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, latest_version())
    with pytest.raises(SchemaNotFoundError):
        validate({**deployment, "kind": "Deploymnet"}, latest_version())
    topic = next(d for d in kit.render("overlays/prod") if d["kind"] == "KafkaTopic")
    with pytest.raises(jsonschema.ValidationError):
        validate({**topic, "spec": {**topic["spec"], "partition": 3}}, latest_version())


def test_the_base_needs_no_custom_resource_definitions(kit) -> None:
    for overlay in ("base", "overlays/dev"):
        assert not [d for d in kit.render(overlay) if "." in d["apiVersion"].split("/")[0]
                    and not d["apiVersion"].split("/")[0].endswith("k8s.io")], overlay


# --- each service ------------------------------------------------------------------------------


def test_every_service_has_deployment_service_and_disruption_budget(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    assert set(kit.pods(docs)) == set(kit.SERVICES)
    services, budgets = by_kind(docs, "Service"), by_kind(docs, "PodDisruptionBudget")
    for name in kit.SERVICES:
        assert f"ctrops-{name}" in services and f"ctrops-{name}" in budgets
        selector = {"app.kubernetes.io/name": name}
        assert services[f"ctrops-{name}"]["spec"]["selector"] == selector
        assert budgets[f"ctrops-{name}"]["spec"]["selector"]["matchLabels"] == selector
        deployment = kit.pods(docs)[name].deployment
        assert deployment["spec"]["selector"]["matchLabels"] == selector
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_configured_variables_are_settings_fields_of_that_service(kit, overlay: str, service: str) -> None:
    env = kit.pods(kit.render(overlay))[service].env()
    assert not kit.unknown_env(service, env), (
        f"{overlay}: {service} is given variables its code never reads: {sorted(kit.unknown_env(service, env))}"
    )


def test_settings_load_and_the_probes_hit_the_port_the_service_binds(kit, overlay: str, service: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    docs = kit.render(overlay)
    pod = kit.pods(docs)[service]
    settings = kit.load_settings_from(service, pod.env(), monkeypatch)
    port = kit.listen_port(service, settings)
    assert kit.listen_host(service, settings) == "0.0.0.0"
    api = kit.api_port(service, settings)  # the scorer's internal prediction API, beside health/metrics
    expected = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if api is not None:
        assert kit.api_host(service, settings) == "0.0.0.0" and api != port
        expected.append({"name": "api", "containerPort": api, "protocol": "TCP"})
    assert pod.container["ports"] == expected
    assert pod.container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod.container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod.container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service_ports = by_kind(docs, "Service")[f"ctrops-{service}"]["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service_ports] == [
        (p["name"], p["containerPort"], p["name"]) for p in expected]
    annotations = pod.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}


def test_the_gateway_calls_the_scorer_api_through_its_service(kit, overlay: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    docs = kit.render(overlay)
    pods = kit.pods(docs)
    scorer = kit.load_settings_from("scorer", pods["scorer"].env(), monkeypatch)
    url = urlsplit(pods["gateway"].env()["CTROPS_SCORER_URL"])  # a gateway setting (checked above)
    service = by_kind(docs, "Service")[url.hostname.split(".")[0]]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "scorer"}
    (target,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    container = {p["name"]: p["containerPort"] for p in pods["scorer"].container["ports"]}
    assert container[target["targetPort"]] == kit.api_port("scorer", scorer), "the API, not health/metrics"


def test_required_connections_are_configured(kit, overlay: str, service: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    docs = kit.render(overlay)
    pod = kit.pods(docs)[service]
    settings = kit.load_settings_from(service, pod.env(), monkeypatch)
    default = kit.settings_class(service).model_fields["kafka_bootstrap_servers"].default
    assert settings.kafka_bootstrap_servers != default, "Kafka must be configured, not the loopback default"
    env = {item["name"]: item for item in pod.container["env"]}
    database = env["CTROPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database["name"].startswith("ctrops-secrets") and not database.get("optional")
    assert env["CTROPS_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["name"]: m["mountPath"] for m in pod.container["volumeMounts"]}
    assert mounts["data"] == str(settings.data_dir) == "/data"
    volumes = {v["name"]: v for v in pod.spec["volumes"]}
    claim = by_kind(docs, "PersistentVolumeClaim")[volumes["data"]["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every pod on every node mounts the store"
    assert "emptyDir" in volumes["tmp"] and mounts["tmp"] == "/tmp"
    if service == "trainer":
        assert settings.mlflow_tracking_uri, "the trainer tracks runs in the MLflow server"
    if service == "reporter":
        assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_pods_are_locked_down(kit, overlay: str, service: str) -> None:
    pod = kit.pods(kit.render(overlay))[service]
    security = pod.spec["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod.container["securityContext"]
    assert container == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                         "capabilities": {"drop": ["ALL"]}}
    assert pod.spec["automountServiceAccountToken"] is False
    # Service links would set CTROPS_GATEWAY_PORT=tcp://... (a Service named ctrops-gateway).
    assert pod.spec["enableServiceLinks"] is False


def test_resources_are_requested_and_bounded(kit, overlay: str, service: str) -> None:
    resources = kit.pods(kit.render(overlay))[service].container["resources"]
    assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"])
    assert memory(resources["requests"]["memory"]) <= memory(resources["limits"]["memory"])


def test_compute_threads_fit_the_cpu_limit(kit, overlay: str, service: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch pool wider than the CPU limit is throttled, not faster (trainer, explainer)."""
    pod = kit.pods(kit.render(overlay))[service]
    settings = kit.load_settings_from(service, pod.env(), monkeypatch)
    limit = math.ceil(cpu(pod.container["resources"]["limits"]["cpu"]))
    for name in type(settings).model_fields:
        if name.endswith("_threads"):
            assert getattr(settings, name) <= limit, f"{overlay}: {name}={getattr(settings, name)} > {limit} CPUs"


def test_images_match_compose_and_the_package_version(kit, overlay: str, service: str) -> None:
    image = kit.pods(kit.render(overlay))[service].container["image"]
    if re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", image):  # pinned by digest: the name still says which
        assert image.split("@")[0].rsplit("/", 1)[-1] == f"ctrops-{service}"
        return
    name, _, tag = image.rpartition(":")
    assert name.rsplit("/", 1)[-1] == f"ctrops-{service}" and tag == kit.project_version(service)
    compose = kit.compose_config()["services"][service]["image"]
    assert compose == f"ctrops-{service}:{tag}"


def test_prometheus_in_kubernetes_scrapes_each_pod_under_its_compose_job_name(kit, overlay: str,
                                                                             service: str) -> None:
    """deploy/prometheus/prometheus-k8s.yml keeps annotated pods and names the job after the
    app.kubernetes.io/name label: that must be the job prometheus.yml uses under compose, so
    the same alert rules and dashboards work in both."""
    import yaml

    k8s = yaml.safe_load((ROOT / "deploy/prometheus/prometheus-k8s.yml").read_text())
    relabel = [r for job in k8s["scrape_configs"] for r in job.get("relabel_configs", [])]
    job_from = [r["source_labels"] for r in relabel if r.get("target_label") == "job"]
    assert job_from == [["__meta_kubernetes_pod_label_app_kubernetes_io_name"]]
    kept = [r["source_labels"] for r in relabel if r.get("action") == "keep"]
    assert ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] in kept
    compose = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in compose["scrape_configs"]}
    labels = kit.pods(kit.render(overlay))[service].deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == service and service in jobs


# --- scaling ---------------------------------------------------------------------------------------


def autoscaled_bounds(docs: list[dict]) -> dict[str, tuple[int, int]]:
    """Deployment name -> (least, most) replicas, from its HPA or its KEDA ScaledObject."""
    bounds = {}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] not in bounds, target
        bounds[target["name"]] = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
    for scaled in by_kind(docs, "ScaledObject").values():
        target = scaled["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment", target
        assert target["name"] not in bounds, f"{target['name']}: an HPA and a ScaledObject would fight"
        bounds[target["name"]] = (scaled["spec"].get("minReplicaCount", 0), scaled["spec"]["maxReplicaCount"])
    return bounds


def test_gateway_and_trainer_autoscale_within_what_kafka_allows(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    scalers = autoscaled_bounds(docs)
    assert set(scalers) == {"ctrops-gateway", "ctrops-trainer"}
    deployments = by_kind(docs, "Deployment")
    partitions = int(common_config(docs)["CTROPS_TOPIC_PARTITIONS"])
    for name, (least, most) in scalers.items():
        assert name in deployments
        assert "replicas" not in deployments[name]["spec"], f"{name}: the autoscaler owns the replica count"
        assert 1 <= least <= most
    # One consumer group of trainers: a replica beyond the partition count never gets work.
    assert scalers["ctrops-trainer"][1] <= partitions
    # Prod scales trainers on Kafka lag (KEDA); base and dev need no CRD and keep the CPU HPA.
    kind = "ScaledObject" if overlay == "overlays/prod" else "HorizontalPodAutoscaler"
    assert "ctrops-trainer" in by_kind(docs, kind)


def test_prod_runs_more_and_bigger_than_dev(kit) -> None:
    dev, prod = kit.render("overlays/dev"), kit.render("overlays/prod")

    def least_replicas(docs: list[dict], name: str) -> int:
        scaled = autoscaled_bounds(docs).get(name)
        return scaled[0] if scaled else by_kind(docs, "Deployment")[name]["spec"]["replicas"]

    more = 0
    for service in kit.SERVICES:
        name = f"ctrops-{service}"
        assert least_replicas(prod, name) >= least_replicas(dev, name)
        more += least_replicas(prod, name) > least_replicas(dev, name)
        dev_limits = kit.pods(dev)[service].container["resources"]["limits"]
        prod_limits = kit.pods(prod)[service].container["resources"]["limits"]
        assert cpu(prod_limits["cpu"]) >= cpu(dev_limits["cpu"])
        assert memory(prod_limits["memory"]) >= memory(dev_limits["memory"])
    assert more >= 4
    assert by_kind(prod, "Deployment")["ctrops-monitor"]["spec"]["replicas"] == 1, "one monitor decides incidents"
    assert autoscaled_bounds(prod)["ctrops-gateway"][0] >= 2, "no single gateway in prod"


def test_overlays_set_their_namespace_with_restricted_pod_security(kit) -> None:
    for overlay, namespace in (("overlays/dev", "ctrops-dev"), ("overlays/prod", "ctrops")):
        docs = kit.render(overlay)
        (ns,) = [d for d in docs if d["kind"] == "Namespace"]
        assert ns["metadata"]["name"] == namespace
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace")


# --- secrets ---------------------------------------------------------------------------------------


def secret_refs(pods: dict) -> set[tuple[str, str, bool]]:
    refs = set()
    for pod in pods.values():
        for item in pod.container["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"], bool(ref.get("optional"))))
    return refs


def test_dev_secret_provides_every_required_key(kit) -> None:
    docs = kit.render("overlays/dev")
    secrets = by_kind(docs, "Secret")
    for name, key, optional in secret_refs(kit.pods(docs)):
        if not optional:
            assert name in secrets and key in secrets[name]["data"], f"dev pods need {name}/{key}"


def test_prod_renders_no_secret_values(kit) -> None:
    """Production secrets are created out of band; the repository holds none."""
    docs = kit.render("overlays/prod")
    assert not by_kind(docs, "Secret")
    assert {name for name, _, _ in secret_refs(kit.pods(docs))} == {"ctrops-secrets"}


def test_prod_turns_authentication_on_with_credentials_from_the_secret(kit, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = kit.settings_class("gateway").model_fields
    pod = kit.pods(kit.render("overlays/prod"))["gateway"]
    env = pod.env()
    if "auth_enabled" not in fields:
        # The marked place where it goes stays in the prod overlay until the gateway has auth.
        assert "CTROPS_AUTH_ENABLED=true" in (ROOT / "deploy/k8s/overlays/prod/kustomization.yaml").read_text()
        return
    assert env.get("CTROPS_AUTH_ENABLED", "").lower() == "true", "prod runs with authentication on"
    from_secret = {item["name"] for item in pod.container["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    credentials = {"CTROPS_AUTH_API_KEYS", "CTROPS_AUTH_JWT_SECRET", "CTROPS_AUTH_JWT_PUBLIC_KEY"}
    assert from_secret & credentials, "auth credentials come from the Secret, never from the ConfigMap"
    assert not credentials & set(kit.pods(kit.render("overlays/prod"))["gateway"].find(
        "ConfigMap", pod.container["envFrom"][1]["configMapRef"]["name"])["data"])
    settings = kit.load_settings_from("gateway", env, monkeypatch)
    assert settings.auth_enabled is True
    dev = kit.load_settings_from("gateway", kit.pods(kit.render("overlays/dev"))["gateway"].env(), monkeypatch)
    assert dev.auth_enabled is False, "dev keeps the local frontend working without credentials"


# --- Kafka topics (Strimzi) --------------------------------------------------------------------


def test_prod_declares_every_topic_as_a_strimzi_kafka_topic(kit) -> None:
    docs = kit.render("overlays/prod")
    config = common_config(docs)
    topics = [d for d in docs if d["kind"] == "KafkaTopic"]
    prefix = config["CTROPS_TOPIC_PREFIX"]
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(prefix + t.value for t in Topic)
    for topic in topics:
        # The services create missing topics with these same values: both must agree.
        assert topic["spec"]["partitions"] == int(config["CTROPS_TOPIC_PARTITIONS"])
        assert topic["spec"]["replicas"] == int(config["CTROPS_TOPIC_REPLICATION"])
        assert topic["spec"]["config"]["min.insync.replicas"] < topic["spec"]["replicas"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] in config["CTROPS_KAFKA_BOOTSTRAP_SERVERS"]

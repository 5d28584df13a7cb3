"""What a platform team checks in deploy/k8s beyond valid objects: network policies that deny
by default and allow what each service connects to (derived from its environment), the
gateway's Ingress (upload and WebSocket timeouts, no public /metrics), trainers scaled by
KEDA on their own consumer group's lag and never stopped mid-run (the preStop drain hook,
run here against a real /metrics endpoint), one ServiceAccount per service, pinned images,
topology spread, a single monitor rolled out with Recreate. Rendered by the real kustomize
(conftest), like test_kubernetes.py."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from ctrops_common.events import Topic

ROOT = Path(__file__).resolve().parents[2]
SCALED_OBJECT_SCHEMA = json.loads((Path(__file__).parent / "schemas/scaledobject_keda.sh_v1alpha1.json").read_text())
# The metadata KEDA's Kafka scaler reads (keda.sh/docs/2.x/scalers/apache-kafka): a misspelt key is
# silently ignored by KEDA, so it is caught here.
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "partitionLimitation", "version", "sasl", "tls", "unsafeSsl", "ensureEvenDistributionOfPartitions",
}
# What a stopping trainer takes after SIGTERM: the training process is given at most 5 s
# (handlers._supervise), the runtime's shutdown waits at most 30 s for its tasks (service.py).
TRAINER_STOP_S = 5 + 30


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
              "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}[operator]()
        if not ok:
            return False
    return True


def namespace_of(docs: list[dict]) -> str:
    spaces = {d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"}
    (space,) = spaces
    return space or "default"


def policies_of(docs: list[dict], deployment: dict) -> list[dict]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return [p for p in docs if p["kind"] == "NetworkPolicy" and selects(p["spec"]["podSelector"], labels)]


def policy_types(policy: dict) -> set[str]:
    return set(policy["spec"].get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in policy["spec"] else []))


def peer_matches(peer: dict, own_namespace: str, namespace: str, pod_labels: dict[str, str]) -> bool:
    """Whether a policy peer admits a pod with ``pod_labels`` in ``namespace``."""
    if "ipBlock" in peer:
        return False  # pods are reached by pod selectors here; ipBlocks are for outside the cluster
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != own_namespace:
        return False
    return selects(peer.get("podSelector", {}), pod_labels)


def egress_allows(policies: list[dict], own_namespace: str, port: int, protocol: str = "TCP", *,
                  namespace: str | None = None, pod_labels: dict[str, str] | None = None) -> bool:
    """Some egress rule lets the pod reach ``port`` (of a pod in ``namespace``; None: anywhere)."""
    for policy in policies:
        if "Egress" not in policy_types(policy):
            continue
        for rule in policy["spec"].get("egress", []):
            ports = rule.get("ports") or [{}]
            if not any(p.get("port", port) == port and p.get("protocol", "TCP") == protocol for p in ports):
                continue
            peers = rule.get("to") or []
            if not peers:
                return True
            if namespace is not None and any(
                    peer_matches(peer, own_namespace, namespace, pod_labels or {}) for peer in peers):
                return True
    return False


def egress_ports(policies: list[dict]) -> set[tuple[int, str]]:
    found = set()
    for policy in policies:
        if "Egress" in policy_types(policy):
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule without ports allows all"
                found |= {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
    return found


def autoscaled_max(docs: list[dict], name: str) -> int | None:
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return hpa["spec"]["maxReplicas"]
    for scaled in by_kind(docs, "ScaledObject").values():
        if scaled["spec"]["scaleTargetRef"]["name"] == name:
            return scaled["spec"]["maxReplicaCount"]
    return None


# --- network policies ----------------------------------------------------------------------------


def test_every_deployment_is_selected_by_a_default_deny_both_ways(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    for service, pod in kit.pods(docs).items():
        policies = policies_of(docs, pod.deployment)
        assert policies, f"{overlay}: no NetworkPolicy selects {service}"
        for direction, rules in (("Ingress", "ingress"), ("Egress", "egress")):
            assert [p for p in policies if direction in policy_types(p) and not p["spec"].get(rules)], (
                f"{overlay}: {service} has no default-deny {direction} policy")


def test_only_the_gateway_is_reachable_from_outside_and_metrics_only_from_prometheus(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    prometheus_peers, internal = [], []
    for service, pod in kit.pods(docs).items():
        sources = []
        for policy in policies_of(docs, pod.deployment):
            if "Ingress" not in policy_types(policy):
                continue
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule open to every source"
                if rule["ports"] == [{"port": "api", "protocol": "TCP"}]:
                    # The scorer's internal prediction API: the gateway's pods of this namespace, nothing else.
                    assert service in kit.API_SERVERS, f"{service} has no internal API"
                    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
                    internal.append(service)
                    continue
                assert rule.get("ports") == [{"port": "http", "protocol": "TCP"}], (
                    f"{policy['metadata']['name']}: only the service's port (health, /metrics; gateway: API)")
                for peer in rule["from"]:
                    assert "namespaceSelector" in peer and "ipBlock" not in peer, peer
                    sources.append((policy["metadata"]["name"], peer))
        from_prometheus = [(name, peer) for name, peer in sources
                           if peer.get("podSelector", {}).get("matchLabels", {}).get(
                               "app.kubernetes.io/name") == "prometheus"]
        assert len(from_prometheus) == 1, f"{overlay}: {service} must be scraped by Prometheus, once"
        prometheus_peers.append(from_prometheus[0])
        others = [entry for entry in sources if entry not in from_prometheus]
        if service == "gateway":
            (controller,) = others
            assert controller[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
        else:
            assert not others, f"{overlay}: {service} is reachable from {others}"
    assert internal == ["scorer"], f"{overlay}: the scorer's API must admit the gateway, once"
    # One policy holds the Prometheus peer, so an overlay changes it in one place.
    assert len({name for name, _ in prometheus_peers}) == 1
    assert prometheus_peers[0][1]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}


def test_egress_is_what_each_service_connects_to(kit, overlay: str, service: str) -> None:
    """Derived from the pod's own environment: Kafka, the database, MLflow, the LLM API, and DNS."""
    docs = kit.render(overlay)
    pod = kit.pods(docs)[service]
    own = namespace_of(docs)
    policies = policies_of(docs, pod.deployment)
    env = pod.env()
    if overlay == "overlays/dev":  # the dev Secret holds a real URL; prod's is created out of band
        import base64

        secret = next(s for s in docs if s["kind"] == "Secret" and s["metadata"]["name"].startswith("ctrops-secrets"))
        env["CTROPS_DATABASE_URL"] = base64.b64decode(secret["data"]["CTROPS_DATABASE_URL"]).decode()
    needed: set[tuple[int, str]] = {(53, "UDP"), (53, "TCP")}
    assert egress_allows(policies, own, 53, "UDP", namespace="kube-system", pod_labels={"k8s-app": "kube-dns"})
    for server in env["CTROPS_KAFKA_BOOTSTRAP_SERVERS"].split(","):
        host, _, port = server.rpartition(":")
        parts = host.split(".")
        kafka_namespace = parts[1] if len(parts) > 1 else own  # <service>.<namespace>.svc
        assert egress_allows(policies, own, int(port), namespace=kafka_namespace), f"{service} cannot reach {server}"
        needed.add((int(port), "TCP"))
    database = urlsplit(env["CTROPS_DATABASE_URL"])
    assert database.scheme.startswith("postgresql")
    assert egress_allows(policies, own, database.port or 5432), f"{service} cannot reach its database"
    needed.add((database.port or 5432, "TCP"))
    if "MLFLOW_TRACKING_URI" in env:
        mlflow = urlsplit(env["MLFLOW_TRACKING_URI"])
        parts = mlflow.hostname.split(".")
        assert egress_allows(policies, own, mlflow.port or 80, namespace=parts[1] if len(parts) > 1 else own,
                             pod_labels={"app.kubernetes.io/name": "mlflow"}), f"{service} cannot reach MLflow"
        needed.add((mlflow.port or 80, "TCP"))
    if "CTROPS_SCORER_URL" in env:  # the gateway proxies predictions to the scorer's API
        scorer = urlsplit(env["CTROPS_SCORER_URL"])
        parts = scorer.hostname.split(".")
        assert egress_allows(policies, own, scorer.port or 80, namespace=parts[1] if len(parts) > 1 else own,
                             pod_labels={"app.kubernetes.io/name": "scorer"}), f"{service} cannot reach the scorer"
        needed.add((scorer.port or 80, "TCP"))
    if any(item["name"] == "OPENAI_API_KEY" for item in pod.container.get("env", [])):
        assert egress_allows(policies, own, 443), "the reporter cannot reach the LLM API"
        needed.add((443, "TCP"))
    assert egress_ports(policies) == needed, f"{overlay}: {service} may connect to more than it uses"
    assert ("MLFLOW_TRACKING_URI" in env) == (service in {"trainer", "explainer"})
    assert ("CTROPS_SCORER_URL" in env) == (service == "gateway")


# --- ingress -----------------------------------------------------------------------------------------


def websocket_paths() -> set[str]:
    """Every WebSocket route the gateway serves, from its routers."""
    import ctrops_gateway.routes as routes
    from fastapi.routing import APIWebSocketRoute

    paths = set()
    for module in pkgutil.iter_modules(routes.__path__):
        router = getattr(importlib.import_module(f"ctrops_gateway.routes.{module.name}"), "router", None)
        paths |= {r.path for r in getattr(router, "routes", []) if isinstance(r, APIWebSocketRoute)}
    return paths


def test_the_gateway_ingress_keeps_uploads_and_websockets_open(kit, overlay: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    docs = kit.render(overlay)
    gateway = kit.pods(docs)["gateway"]
    settings = kit.load_settings_from("gateway", gateway.env(), monkeypatch)
    ingresses = by_kind(docs, "Ingress")
    paths = {}
    for ingress in ingresses.values():
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"] == {"name": "ctrops-gateway", "port": {"name": "http"}}
                paths[path["path"]] = (path["pathType"], ingress["metadata"].get("annotations", {}))
    assert set(paths) == {"/", "/ws", "/metrics"}
    assert {s["metadata"]["name"] for s in docs if s["kind"] == "Service"} >= {"ctrops-gateway"}

    kind, api = paths["/"]
    assert kind == "Prefix"
    assert int(api["nginx.ingress.kubernetes.io/proxy-body-size"].removesuffix("m")) >= settings.max_upload_mb
    assert api["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        # An upload waits for ingest's verdict before the response starts.
        assert int(api[f"nginx.ingress.kubernetes.io/{timeout}"]) > settings.upload_timeout_s
        assert int(api[f"nginx.ingress.kubernetes.io/{timeout}"]) > settings.report_timeout_s

    kind, ws = paths["/ws"]
    assert kind == "Prefix"
    routes = websocket_paths()
    assert routes and all(route.startswith("/ws/") for route in routes), routes
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(ws[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600

    kind, metrics = paths["/metrics"]
    assert kind == "Exact", "the location that wins over the / prefix"
    assert set(metrics["nginx.ingress.kubernetes.io/denylist-source-range"].split(",")) == {"0.0.0.0/0", "::/0"}

    if overlay == "overlays/prod":
        origin = urlsplit(gateway.env()["CTROPS_CORS_ORIGINS"].split(",")[0]).hostname
        for ingress in ingresses.values():
            assert [r["host"] for r in ingress["spec"]["rules"]] == [origin]
            assert ingress["spec"]["tls"] == [{"hosts": [origin], "secretName": "ctrops-tls"}]


# --- identities, images, placement -----------------------------------------------------------------------


def test_each_service_runs_under_its_own_service_account_without_a_token(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    accounts = by_kind(docs, "ServiceAccount")
    used = []
    for service, pod in kit.pods(docs).items():
        name = pod.spec.get("serviceAccountName")
        assert name == f"ctrops-{service}", f"{overlay}: {service} runs as {name!r}"
        assert accounts[name]["automountServiceAccountToken"] is False
        assert pod.spec["automountServiceAccountToken"] is False, "no service calls the Kubernetes API"
        used.append(name)
    assert len(set(used)) == len(kit.SERVICES)


IMAGE = re.compile(r"(?P<name>[a-z0-9./_-]+(?::[0-9]+/[a-z0-9./_-]+)?)(?::(?P<tag>[\w][\w.-]{0,127}))?"
                   r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?")


def test_images_are_pinned_never_latest(kit, overlay: str) -> None:
    for pod in kit.pods(kit.render(overlay)).values():
        for container in pod.spec["containers"] + pod.spec.get("initContainers", []):
            match = IMAGE.fullmatch(container["image"])
            assert match, container["image"]
            assert match["tag"] or match["digest"], f"{container['image']}: no tag is :latest"
            assert match["tag"] != "latest", container["image"]
    if overlay == "overlays/prod":  # the release is set in one place: kustomize `images:`
        images = yaml.safe_load((ROOT / "deploy/k8s/overlays/prod/kustomization.yaml").read_text())["images"]
        assert {i["name"] for i in images} == {f"ctrops-{s}" for s in kit.SERVICES}
        for image in images:
            assert ("digest" in image) != ("newTag" in image), image
            assert image.get("newTag") != "latest"
            assert "digest" not in image or re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])


def test_replicated_deployments_spread_over_nodes_and_zones(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    for service, pod in kit.pods(docs).items():
        replicas = autoscaled_max(docs, pod.deployment["metadata"]["name"]) or pod.deployment["spec"]["replicas"]
        if service == "monitor":
            continue  # one replica by design (next test)
        assert replicas >= 1
        constraints = pod.spec.get("topologySpreadConstraints", [])
        own = pod.deployment["spec"]["template"]["metadata"]["labels"]
        keys = {c["topologyKey"] for c in constraints if selects(c["labelSelector"], own)}
        assert keys >= {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, f"{overlay}: {service}"
        for constraint in constraints:
            assert constraint["maxSkew"] == 1 and constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint.get("matchLabelKeys") == ["pod-template-hash"], "spread per rollout revision"


def test_the_single_monitor_is_replaced_not_rolled(kit, overlay: str) -> None:
    docs = kit.render(overlay)
    monitor = by_kind(docs, "Deployment")["ctrops-monitor"]
    assert monitor["spec"]["replicas"] == 1 and autoscaled_max(docs, "ctrops-monitor") is None
    assert monitor["spec"]["strategy"] == {"type": "Recreate"}, "a rolling update would run two monitors"


# --- trainers: KEDA on Kafka lag, never stopped mid-run ---------------------------------------------------


def test_prod_scales_trainers_on_the_lag_of_their_own_consumer_group(kit, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrops_common.bus import Bus

    docs = kit.render("overlays/prod")
    pod = kit.pods(docs)["trainer"]
    settings = kit.load_settings_from("trainer", pod.env(), monkeypatch)
    bus = Bus(settings, "trainer")  # the trainer's runtime: ServiceRuntime("trainer", ...), default group
    (scaled,) = by_kind(docs, "ScaledObject").values()
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": pod.deployment["metadata"]["name"]}
    assert not [h for h in by_kind(docs, "HorizontalPodAutoscaler").values()
                if h["spec"]["scaleTargetRef"]["name"] == "ctrops-trainer"], "KEDA's HPA and a CPU HPA would fight"
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka" and set(metadata) <= KAFKA_SCALER_KEYS
    assert metadata["bootstrapServers"] == settings.kafka_bootstrap_servers
    assert metadata["consumerGroup"] == bus.group_id == "trainer"
    assert metadata["topic"] == bus.topic_name(Topic.TRAINING_REQUESTED)
    assert metadata["lagThreshold"] == "1", "one trainer per run in progress or waiting"
    assert metadata["allowIdleConsumers"] == "false" and metadata["offsetResetPolicy"] == "earliest"
    partitions = int(pod.env()["CTROPS_TOPIC_PARTITIONS"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]


def test_the_scaled_object_schema_is_strict(kit) -> None:
    import copy

    scaled = by_kind(kit.render("overlays/prod"), "ScaledObject")["ctrops-trainer"]
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    broken = copy.deepcopy(scaled)
    broken["spec"]["maxReplicas"] = 6  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 1  # KEDA's metadata values are strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def drain_command(pod) -> list[str]:
    hook = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:3] == ["python", "-m", "ctrops_trainer.drain"], hook
    return hook


def test_a_stopping_trainer_first_waits_for_its_training(kit, overlay: str) -> None:
    pod = kit.pods(kit.render(overlay))["trainer"]
    hook = drain_command(pod)
    max_wait = float(hook[hook.index("--max-wait-s") + 1])
    grace = pod.spec["terminationGracePeriodSeconds"]
    assert grace >= 3 * 3600, "long enough for the longest runs we expect (docs/deploy.md)"
    assert grace - 120 <= max_wait, "the hook waits for nearly all of the grace period"
    assert grace >= max_wait + TRAINER_STOP_S, (
        "the hook and the trainer's own stop must fit in the grace period, or the kubelet kills the run")
    for service, other in kit.pods(kit.render(overlay)).items():
        if service != "trainer":
            assert "lifecycle" not in other.container


class _Metrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args) -> None:
        pass


def exposition(in_flight: float) -> bytes:
    """What the trainer's /metrics says, rendered by prometheus_client like the service does."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from ctrops_common.observability import EVENTS_IN_FLIGHT

    registry = CollectorRegistry()
    gauge = Gauge(EVENTS_IN_FLIGHT._name, "Events being handled now", ["service"], registry=registry)
    gauge.labels("trainer").set(in_flight)
    gauge.labels("gateway").set(7)  # another service's series is not this trainer's work
    return generate_latest(registry)


def test_the_drain_hook_returns_only_once_the_trainer_is_idle(kit) -> None:
    hook = drain_command(kit.pods(kit.render("base"))["trainer"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _Metrics.body = exposition(1)  # a training in progress
        command = [sys.executable, *hook[1:], "--port", str(server.server_address[1]), "--poll-s", "0.2"]
        started = time.monotonic()
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert process.poll() is None, "the hook returned while the trainer was training"
        _Metrics.body = exposition(0)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0 and "drain: idle" in stderr, stderr
        assert time.monotonic() - started < 30
    finally:
        server.shutdown()
        server.server_close()
    # No trainer answering (it crashed, or never started): nothing to wait for.
    done = subprocess.run([sys.executable, *hook[1:], "--port", str(server.server_address[1])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "drain: unreachable" in done.stderr


def test_the_drain_hook_gives_up_at_its_limit() -> None:
    from ctrops_trainer import drain

    now = [0.0]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _Metrics.body = exposition(1)
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        why = drain.wait_until_idle(url, max_wait_s=100, poll_s=10, idle_polls=2,
                                    clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
        assert why == "timeout" and 90 <= now[0] <= 100
        _Metrics.body = b"# a trainer that exports no such gauge has nothing in flight\n"
        assert drain.read_in_flight(url, timeout=5) == 0
    finally:
        server.shutdown()
        server.server_close()

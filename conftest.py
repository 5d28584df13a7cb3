"""Test-session fixtures shared by every package: one real embedded broker per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrops_common.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tansu broker for the whole session (or CTROPS_TEST_KAFKA if set)."""
    external = os.environ.get("CTROPS_TEST_KAFKA")
    if external:
        os.environ["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = external
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    broker = EmbeddedBroker(free_port(), log_file=log).start()
    os.environ["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh file store root, exported so settings and child processes use it."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("CTROPS_DATA_DIR", str(root))
    return root

"""Settings: one prefix, well-known bare names, and a clear stop on a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ctrops_common.settings import CommonSettings, ServiceSettings, load_settings


def test_prefixed_and_bare_names(monkeypatch):
    monkeypatch.delenv("CTROPS_KAFKA_BOOTSTRAP_SERVERS", raising=False)  # the session broker sets it
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CTROPS_HEARTBEAT_INTERVAL_S", "2.5")
    settings = CommonSettings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.heartbeat_interval_s == 2.5
    monkeypatch.setenv("CTROPS_KAFKA_BOOTSTRAP_SERVERS", "other:9093")
    assert CommonSettings().kafka_bootstrap_servers == "other:9093"  # the prefixed name wins


def test_load_settings_exits_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("CTROPS_HTTP_PORT", "eighty")
    with pytest.raises(SystemExit) as stop:
        load_settings(ServiceSettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "CTROPS_HTTP_PORT='eighty'" in err
    assert "valid integer" in err


def test_sqlite_default_and_explicit_database_url(tmp_path, monkeypatch):
    monkeypatch.setenv("CTROPS_DATA_DIR", str(tmp_path))
    assert CommonSettings().sqlalchemy_url("trainer") == f"sqlite:///{tmp_path}/db/trainer.sqlite3"
    monkeypatch.setenv("CTROPS_DATABASE_URL", "postgresql+psycopg://u@db/ctrops")
    assert CommonSettings().sqlalchemy_url("trainer") == "postgresql+psycopg://u@db/ctrops"


@pytest.mark.parametrize("service", ["ingest", "trainer", "explainer", "reporter", "monitor", "scorer", "gateway"])
def test_every_service_refuses_to_start_on_a_bad_setting(service, tmp_path):
    env = {**os.environ, "CTROPS_DATA_DIR": str(tmp_path), "CTROPS_HEARTBEAT_INTERVAL_S": "often"}
    done = subprocess.run([sys.executable, "-m", f"ctrops_{service}"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CTROPS_HEARTBEAT_INTERVAL_S='often'" in done.stderr

"""`make run` on this checkout: broker + seven services reach healthy, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from ctrops_common.broker import port_open

ROOT = Path(__file__).resolve().parents[1]


def _free_block(size: int) -> int:
    """A base port with ``size`` free ports after it, below the kernel's ephemeral range (32768+ here): a
    block taken from that range can be handed to an outgoing connection of the starting stack before
    the service binds it (seen once: the trainer's health port, 'address already in use')."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    for _ in range(200):
        base = random.randrange(20000, max(20001, low - size - 1))
        if not any(port_open("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports")


def test_make_run_reaches_healthy_and_stops_cleanly(tmp_path):
    base = _free_block(9)
    gateway, broker, scorer_api = base + 6, base + 7, base + 8
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTROPS_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(CTROPS_GATEWAY_PORT=str(gateway), CTROPS_BROKER_PORT=str(broker), CTROPS_SCORER_API_PORT=str(scorer_api),
               CTROPS_SERVICE_PORT_BASE=str(base), CTROPS_DATA_DIR=str(tmp_path / "data"),
               CTROPS_HEARTBEAT_INTERVAL_S="1", CTROPS_SAMPLE_ROWS="2000")
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        body = {}
        while body.get("status") != "healthy":
            assert make.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not healthy: {body}\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/api/health", timeout=2) as r:
                    body = json.loads(r.read())
            except (OSError, http.client.HTTPException):  # HTTPException: a TCP self-connect before the bind
                pass
            time.sleep(0.5)
        while "sample data to upload" not in log.read_text():  # the banner follows readiness
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert sorted(body["services"]) == sorted(["ingest", "trainer", "explainer", "reporter", "monitor", "scorer",
                                                   "gateway"])
        assert all(s["status"] == "up" for s in body["services"].values())
        assert body["broker"]["reachable"]
        # The scorer's internal API is up on the port make run gave it (the gateway is told the same one).
        with urllib.request.urlopen(f"http://127.0.0.1:{scorer_api}/healthz", timeout=5) as r:
            assert r.status == 200
        output = log.read_text()
        assert f"http://localhost:{gateway}" in output and "/docs" in output
        sample = tmp_path / "data" / "samples" / "ctr_sample_2000.csv"
        assert f"sample data to upload: {sample}" in output
        assert sample.read_text().count("\n") == 2001  # header + rows
        children = psutil.Process(make.pid).children(recursive=True)
        assert len(children) >= 8  # the supervisor, the broker and seven services (make may add a shell)
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        make.wait(timeout=60)
    time.sleep(0.5)
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for port in (gateway, broker, scorer_api, *range(base, base + 6)):
        assert not port_open("127.0.0.1", port), f"port {port} still open after stop"
    assert "stopped" in log.read_text()


def test_supervisor_reports_a_crashed_service_loudly_and_restarts_it(tmp_path):
    base = _free_block(7)
    gateway, broker = base + 5, base + 6
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTROPS_")}
    env.update(CTROPS_GATEWAY_PORT=str(gateway), CTROPS_BROKER_PORT=str(broker),
               CTROPS_SERVICE_PORT_BASE=str(base), CTROPS_DATA_DIR=str(tmp_path / "data"), CTROPS_SAMPLE_ROWS="0")
    log = tmp_path / "stack.log"
    with open(log, "wb") as out:
        stack = subprocess.Popen([str(ROOT / ".venv/bin/python"), "-m", "ctrops_common.stack",
                                  "--services", "monitor"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "services ready" not in log.read_text():
            assert stack.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        monitor = next(p for p in psutil.Process(stack.pid).children() if "ctrops_monitor" in " ".join(p.cmdline()))
        monitor.kill()
        while "monitor CRASHED" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        while not port_open("127.0.0.1", base + 4):  # restarted and listening again
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=60)
    assert stack.returncode == 0

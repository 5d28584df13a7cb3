"""The supervisor (``python -m ctrops_common.stack``) owns the embedded broker like a service (issue 17).

A killed broker comes back on its port after the backoff and the services reach it again;
every way of stopping (SIGTERM to the process group, two Ctrl-C's 0.15 s apart, kill -9 of
the supervisor) leaves no process and no port behind, and the next start is clean. One
service (the monitor) keeps these fast; ``test_make_run.py`` covers all six under ``make run``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from ctrops_common.broker import free_port, port_open
from ctrops_common.bus import ensure_topics
from ctrops_common.events import Topic, decode_event
from ctrops_common.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[1]
MONITOR_OFFSET = 4  # the monitor's health port: CTROPS_SERVICE_PORT_BASE + its index in stack.SERVICES


class Supervisor:
    """One ``python -m ctrops_common.stack --services monitor`` on fixed ports, in its own process group."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.broker_port, self.gateway_port, self.base = free_port(), free_port(), free_port() - MONITOR_OFFSET
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "stack-0.log"

    @property
    def monitor_port(self) -> int:
        return self.base + MONITOR_OFFSET

    @property
    def ports(self) -> tuple[int, int]:
        return self.broker_port, self.monitor_port

    def start(self) -> None:
        """Start and wait until the monitor is ready; fails if a port is still taken (an unclean stop)."""
        for port in self.ports:
            assert not port_open("127.0.0.1", port), f"port {port} still taken before start #{self.runs + 1}"
        self.runs += 1
        self.log = self.tmp_path / f"stack-{self.runs}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTROPS_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update(CTROPS_BROKER_PORT=str(self.broker_port), CTROPS_GATEWAY_PORT=str(self.gateway_port),
                   CTROPS_SERVICE_PORT_BASE=str(self.base), CTROPS_DATA_DIR=str(self.tmp_path / "data"),
                   CTROPS_SAMPLE_ROWS="0", CTROPS_HEARTBEAT_INTERVAL_S="1")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(ROOT / ".venv/bin/python"), "-m", "ctrops_common.stack", "--services", "monitor"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,  # a group, as make run is
            )
        self.wait_for(lambda: "services ready" in self.text(), 120, "ready")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"not {what} within {timeout_s}s:\n{self.text()[-4000:]}"
            time.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        assert self.process is not None
        return [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]

    def broker(self) -> psutil.Process:
        return next(p for p in self.processes() if "tansu" in " ".join(p.cmdline()))

    def assert_nothing_left(self, processes: list[psutil.Process], timeout_s: float) -> None:
        """No process of the stack alive and no port of it open within ``timeout_s``."""
        def gone() -> bool:
            alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            return not alive and not any(port_open("127.0.0.1", port) for port in self.ports)
        self.wait_for(gone, timeout_s, "all stopped (processes and ports)")


def _alive(p: psutil.Process) -> bool:
    return p.is_running() and p.status() != psutil.STATUS_ZOMBIE


@pytest.fixture
def supervisor(tmp_path: Path):
    sup = Supervisor(tmp_path)
    yield sup
    if sup.process is not None and sup.process.poll() is None:
        os.killpg(sup.process.pid, signal.SIGTERM)
        sup.process.wait(timeout=60)


async def _heartbeat_from(bootstrap: str, service: str, after: float, timeout_s: float) -> bool:
    """Whether ``service`` publishes a heartbeat to the broker at ``bootstrap`` (created after ``after``)."""
    from aiokafka import AIOKafkaConsumer

    settings = CommonSettings(kafka_bootstrap_servers=bootstrap)
    await ensure_topics(settings)  # the restarted broker is empty (memory-only)
    consumer = AIOKafkaConsumer(settings.topic_prefix + Topic.SERVICE_HEARTBEAT.value, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = decode_event(Topic.SERVICE_HEARTBEAT.value, record.value)
                    if event.payload.service == service and event.time.timestamp() >= after:
                        return True
        return False
    finally:
        await consumer.stop()


def test_a_killed_broker_comes_back_on_its_port_loudly_and_services_reach_it_again(supervisor):
    supervisor.start()
    broker = supervisor.broker()
    monitor = next(p for p in supervisor.processes() if "ctrops_monitor" in " ".join(p.cmdline()))
    killed = time.time()
    broker.kill()
    supervisor.wait_for(lambda: "broker CRASHED" in supervisor.text(), 10, "announced")
    text = supervisor.text()
    assert "crash #1" in text and f"127.0.0.1:{supervisor.broker_port}" in text
    # Back on the same port within the first backoff (2 s) plus the broker's start.
    supervisor.wait_for(lambda: port_open("127.0.0.1", supervisor.broker_port), 15, "listening again")
    assert time.time() - killed < 15
    supervisor.wait_for(lambda: "listening again" in supervisor.text(), 10, "said so")
    restarted = supervisor.broker()
    assert restarted.pid != broker.pid
    assert _alive(monitor) and monitor.pid in {p.pid for p in supervisor.processes()}  # services are not restarted
    # The monitor publishes its heartbeats to the new broker: its producer reconnected.
    assert asyncio.run(_heartbeat_from(f"127.0.0.1:{supervisor.broker_port}", "monitor", killed, 45)), \
        supervisor.text()[-4000:]
    # The restarted broker is stopped like the first one.
    processes = supervisor.processes()
    os.killpg(supervisor.process.pid, signal.SIGTERM)
    assert supervisor.process.wait(timeout=60) == 0
    supervisor.assert_nothing_left(processes, 15)


def stop_with_two_signals(supervisor, first: signal.Signals, second: signal.Signals, gap_s: float) -> str:
    """Start the stack, signal its process group twice ``gap_s`` apart; it must stop cleanly and leave
    nothing behind. Returns the supervisor's output."""
    supervisor.start()
    processes = supervisor.processes()
    os.killpg(supervisor.process.pid, first)
    time.sleep(gap_s)
    os.killpg(supervisor.process.pid, second)
    assert supervisor.process.wait(timeout=60) == 0
    supervisor.assert_nothing_left(processes, 15)
    return supervisor.text()


def test_every_way_of_stopping_leaves_nothing_and_the_next_start_is_clean(supervisor):
    # SIGTERM to the whole process group (systemd, a CI runner, a container runtime).
    supervisor.start()
    processes = supervisor.processes()
    assert any("tansu" in " ".join(p.cmdline()) for p in processes)
    os.killpg(supervisor.process.pid, signal.SIGTERM)
    assert supervisor.process.wait(timeout=60) == 0
    supervisor.assert_nothing_left(processes, 15)
    assert "broker   | stopped" in supervisor.text()

    # Two Ctrl-C's 0.15 s apart: the second lands inside the stop and must not abort it.
    text = stop_with_two_signals(supervisor, signal.SIGINT, signal.SIGINT, 0.15)
    assert "broker   | stopped" in text and "KeyboardInterrupt" not in text and "Traceback" not in text
    assert "1 more stop signal(s) arrived while stopping; the stop went on to the end" in text

    # A second signal after a SIGTERM, 0.1 s apart (issue 17's "must show").
    assert "Traceback" not in stop_with_two_signals(supervisor, signal.SIGTERM, signal.SIGINT, 0.1)

    # kill -9 of the supervisor: the parent-death signal takes the broker and the services down.
    supervisor.start()
    processes = supervisor.processes()
    supervisor.process.kill()
    supervisor.process.wait(timeout=10)
    supervisor.assert_nothing_left(processes, 15)

    # ... and the next start is clean (start() checks the ports are free first).
    supervisor.start()
    os.killpg(supervisor.process.pid, signal.SIGINT)
    assert supervisor.process.wait(timeout=60) == 0

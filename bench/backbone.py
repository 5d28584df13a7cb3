"""Backbone benchmark: time from `make run` (installed) to all services ready, and the broker
round trip (producer -> probe service -> reply consumer), p50/p99, with the platform's consumer.

Usage: .venv/bin/python bench/backbone.py [--probes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ctrops_common.broker import EmbeddedBroker, free_port
from ctrops_common.testing import start_service

ROOT = Path(__file__).resolve().parents[1]


def startup_time(tmp: Path) -> float:
    base = 18101
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTROPS_")}
    env.update(CTROPS_GATEWAY_PORT=str(free_port()), CTROPS_BROKER_PORT=str(free_port()),
               CTROPS_SCORER_API_PORT=str(free_port()), CTROPS_SERVICE_PORT_BASE=str(base),
               CTROPS_DATA_DIR=str(tmp / "stack"))
    started = time.perf_counter()
    proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            if b"services ready" in raw:
                return time.perf_counter() - started
        raise RuntimeError("stack exited before it was ready")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


async def round_trips(count: int) -> np.ndarray:
    from aiokafka import AIOKafkaConsumer

    from ctrops_common.bus import Bus
    from ctrops_common.events import Probe, Topic, decode_event, new_id
    from ctrops_common.settings import CommonSettings

    settings = CommonSettings()
    bus = Bus(settings, "bench")
    await bus.start()
    replies = AIOKafkaConsumer(settings.topic_prefix + Topic.PROBE_REPLY.value,
                               bootstrap_servers=settings.kafka_bootstrap_servers,
                               auto_offset_reset="latest", group_id=f"bench-{new_id()}",
                               fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms)
    await replies.start()
    await asyncio.sleep(2)  # let the reply consumer settle on its partitions
    samples = []
    try:
        for _ in range(count):
            probe_id = new_id()
            sent = time.perf_counter()
            await bus.publish(Topic.PROBE, Probe(probe_id=probe_id, sent_at=time.time()))
            while True:
                record = await replies.getone()
                if decode_event(Topic.PROBE_REPLY.value, record.value).payload.probe_id == probe_id:
                    break
            samples.append((time.perf_counter() - sent) * 1000)
    finally:
        await replies.stop()
        await bus.stop()
    return np.array(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not os.environ.get("SKIP_STARTUP"):
            print(f"make run -> all 6 services ready: {startup_time(tmp):.1f} s")
        broker = EmbeddedBroker(free_port()).start()
        os.environ.update(CTROPS_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, CTROPS_DATA_DIR=str(tmp / "rt"),
                          CTROPS_TOPIC_PREFIX="bench.")
        probe = start_service("probe", tmp / "logs", module="ctrops_common.probe")
        try:
            ms = asyncio.run(round_trips(args.probes))
        finally:
            probe.stop()
            broker.stop()
        print(f"broker round trip (publish acks=all -> probe service handles, commits, replies -> consumer), "
              f"{len(ms)} probes one at a time: p50 {np.percentile(ms, 50):.1f} ms, "
              f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms")


if __name__ == "__main__":
    sys.exit(main())

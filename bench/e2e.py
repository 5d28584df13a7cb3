"""End-to-end benchmark: wall time from upload to PDF on the whole platform, by stage.

Starts the real stack (``python -m ctrops_common.stack``: embedded broker + six services,
default settings, free ports, a temporary data folder), generates the 60k-row Toss-layout
file, then does what a user does through the gateway: POST /api/upload, POST /api/train
(10 epochs, every other option at its default), waits for the report and downloads the PDF.
Stage boundaries come from the events on the broker (each carries the time its producer
published it), so the breakdown is the platform's own:

- upload + ingest: the POST /api/upload request (streamed to the store, validated,
  profiled, converted to Parquet; it answers with ingest's verdict);
- queue: training.requested -> training.started (the trainer picks it up, spawns the process);
- training: training.started -> training.done;
- explanation: training.done -> explanation.done;
- report + PDF: explanation.done -> report.ready (auto report: JSON, narrative, PDF);
- download: GET /api/report/pdf/{run_id}.

Usage: .venv/bin/python bench/e2e.py [--rows 60000] [--epochs 10] [--keep]
Extra environment variables are passed to the services (e.g. CTROPS_EXPLAINER_PERMUTATION_REPEATS=3).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ctrops_common.broker import free_port, port_open
from ctrops_common.datagen import generate
from ctrops_common.dataset import explanation_path
from ctrops_common.documents import Explanation, read_document
from ctrops_common.events import Topic, decode_event
from ctrops_common.storage import FileStore

ROOT = Path(__file__).resolve().parents[1]


def free_block(size: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + size < 65000 and not any(port_open("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports")


async def events(bootstrap: str, topics: list[Topic], run_id: str) -> dict[str, list]:
    """Every event of ``topics`` for ``run_id`` (read to the end of each partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    prefix = os.environ.get("CTROPS_TOPIC_PREFIX", "")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list] = {t.value: [] for t in topics}
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(prefix + t.value, p) for t in topics
               for p in (consumer.partitions_for_topic(prefix + t.value) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    topic = record.topic.removeprefix(prefix)
                    event = decode_event(topic, record.value)
                    if event.correlation_id == run_id:
                        found[topic].append(event)
    finally:
        await consumer.stop()
    return found


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the data folder (logs, store) for inspection")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ctrops-bench-e2e-"))
    gateway, broker, scorer_api, base = free_port(), free_port(), free_port(), free_block(6)
    bootstrap = f"127.0.0.1:{broker}"
    url = f"http://127.0.0.1:{gateway}"
    env = {k: v for k, v in os.environ.items() if k not in ("CTROPS_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(CTROPS_GATEWAY_PORT=str(gateway), CTROPS_BROKER_PORT=str(broker), CTROPS_SERVICE_PORT_BASE=str(base),
               CTROPS_SCORER_API_PORT=str(scorer_api), CTROPS_DATA_DIR=str(work / "data"), CTROPS_LOG_JSON="false")
    overrides = {k: v for k, v in os.environ.items() if k.startswith("CTROPS_")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average at start {load_average()}")
    if overrides:
        print(f"service settings from the environment: {overrides}")

    csv = work / "ctr_60k.csv"
    t = time.perf_counter()
    truth = generate(csv, args.rows, seed=42)
    print(f"generated {csv.name}: {truth['rows']:,} rows, {truth['clicks']:,} clicks, "
          f"{csv.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s (not timed below)")

    log = open(work / "stack.log", "wb")
    stack = subprocess.Popen([sys.executable, "-m", "ctrops_common.stack"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t = time.perf_counter()
        client = httpx.Client(base_url=url, timeout=900)
        while True:
            if stack.poll() is not None:
                raise SystemExit(f"the stack exited:\n{(work / 'stack.log').read_text()[-3000:]}")
            try:
                if client.get("/api/health").json()["status"] == "healthy":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        print(f"stack healthy in {time.perf_counter() - t:.1f}s (not timed below)")

        t0 = time.time()
        with open(csv, "rb") as fh:
            upload = client.post("/api/upload", files={"file": (csv.name, fh, "text/csv")})
        t_uploaded = time.time()
        upload.raise_for_status()
        file_id = upload.json()["file_id"]
        config = {"epochs": args.epochs}
        train = client.post("/api/train", json={"file_id": file_id, "config": config})
        train.raise_for_status()
        run_id = train.json()["run_id"]
        print(f"upload answered in {t_uploaded - t0:.1f}s; training run {run_id} with config {config} "
              f"(other options default); load average {load_average()}")
        while True:
            report = client.get(f"/api/report/ai/{run_id}")
            if report.status_code == 200:
                break
            if report.status_code not in (404, 409):
                raise SystemExit(f"report failed: {report.status_code} {report.text[:500]}")
            time.sleep(0.5)
        pdf = client.get(f"/api/report/pdf/{run_id}")
        t_end = time.time()
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text[:300]
        print(f"PDF downloaded ({len(pdf.content) / 1024:.0f} KB); load average at the end {load_average()}")

        found = asyncio.run(events(bootstrap, [Topic.TRAINING_REQUESTED, Topic.TRAINING_STARTED, Topic.TRAINING_DONE,
                                               Topic.EXPLANATION_DONE, Topic.REPORT_READY], run_id))
        at = {topic: min(e.time.timestamp() for e in evs) for topic, evs in found.items() if evs}
        auto = [e for e in found[Topic.REPORT_READY.value] if e.payload.request_id == f"auto-{run_id}"]
        at[Topic.REPORT_READY.value] = min(e.time.timestamp() for e in auto)
        stages = [
            ("upload + ingest (POST /api/upload)", t0, t_uploaded),
            ("train request -> trainer started", at["training.requested"], at["training.started"]),
            (f"training ({args.epochs} epochs)", at["training.started"], at["training.done"]),
            ("explanation (LIME, permutation, correlation)", at["training.done"], at["explanation.done"]),
            ("report JSON + PDF", at["explanation.done"], at["report.ready"]),
            ("report.ready -> PDF downloaded", at["report.ready"], t_end),
        ]
        total = t_end - t0
        print(f"\n| stage | seconds | share |\n|---|---|---|")
        for name, start, end in stages:
            print(f"| {name} | {end - start:.1f} | {100 * (end - start) / total:.0f}% |")
        print(f"| **upload -> PDF** | **{total:.1f}** | target < 180 s: {'met' if total < 180 else 'missed'} |")

        done = found["training.done"][0].payload
        print(f"\ntraining: {done.epochs_run} epochs in {done.duration_s:.1f}s (trainer's own clock), best epoch "
              f"{done.best_epoch}, val AUC {done.metrics.auc:.3f}, AP {done.metrics.ap:.3f}")
        explanation = read_document(FileStore(work / "data"), explanation_path(run_id), Explanation)
        timings = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in explanation.timings.items())
        print(f"explainer (its own clock): {timings}; {explanation.sample.rows} rows explained")
        print(f"top features: {', '.join(f.feature for f in explanation.features[:6])}")
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        log.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

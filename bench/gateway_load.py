"""Gateway under load: GET /api/train/status/{run_id} and /api/health at fixed request rates, and the
first-to-last client spread of one message fanned out to 1,000 WebSocket clients of a run.

Setup (stated in docs/benchmarks.md with the figures): the real gateway process
(``python -m ctrops_gateway``, uvicorn, default settings but WebSockets per client raised to 10,000)
on the embedded tansu broker, both pinned to CPU 0; the load generator is a separate process pinned
to CPU 1, so the server never starves it. The generator is open-loop: requests are scheduled at a
fixed rate over a pool of keep-alive HTTP/1.1 connections (64 by default) written with raw asyncio
streams (a few microseconds of client CPU per request), and each latency is measured from the
request's *scheduled* time, so queueing when the server falls behind counts (no coordinated omission).

The run it reads has 10 finished epochs of a 30-epoch config (published as the trainer would, consumed
by the gateway). For the WebSocket spread, the clients (same pinned process, ``websockets``) connect
to /ws/training/{run_id}, read its history, then the bench publishes epochs 11..N one every 0.5 s; each
client stamps the time it received each ``epoch_update``; spread = last stamp - first stamp.

Usage: .venv/bin/python bench/gateway_load.py [--rates 200,500] [--duration 15] [--ws-clients 1000]
Prints one JSON object (and a table) with the machine, the load and the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

SERVER_CPU = 0
CLIENT_CPU = 1


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- the load generator (its own process, CPU 1) ---------------------------------------------------------------


async def _open_loop(port: int, path: str, rate: float, duration: float, connections: int) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n".encode()
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = {"status": 0, "io": 0}

    async def one(scheduled: float) -> None:
        conn = await pool.get()
        reader, writer = conn
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - scheduled)
            if status != 200:
                errors["status"] += 1
            pool.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors["io"] += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    tasks = []
    start = time.perf_counter() + 0.05
    total = int(rate * duration)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    ms = [x * 1000 for x in latencies]
    return {"path": path, "target_rps": rate, "requests": total, "achieved_rps": round(len(ms) / elapsed, 1),
            "p50_ms": round(percentile(ms, 50), 2), "p90_ms": round(percentile(ms, 90), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None,
            "non_200": errors["status"], "io_errors": errors["io"]}


def _load_worker(port: int, path: str, rate: float, duration: float, connections: int, out) -> None:
    pin(CLIENT_CPU)
    out.put(asyncio.run(_open_loop(port, path, rate, duration, connections)))


def load(port: int, path: str, rate: float, duration: float, connections: int) -> dict:
    out: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_load_worker, args=(port, path, rate, duration, connections, out))
    proc.start()
    result = out.get(timeout=duration * 20 + 120)
    proc.join()
    return result


# -- WebSocket clients (their own process, CPU 1) ----------------------------------------------------------------


async def _ws_clients(port: int, run_id: str, clients: int, epochs: list[int], ready, go) -> dict:
    import websockets

    stamps: dict[int, list[float]] = {e: [] for e in epochs}
    want = set(epochs)
    last = max(epochs)
    opened = 0
    connected = asyncio.Event()
    all_got_last = asyncio.Event()  # clients close only after every one has the last message: the
    # close handshakes of early clients must not land in the spread of the late ones (in this process
    # and in the server, which would be handling 1,000 disconnects while still sending)

    async def client() -> None:
        nonlocal opened
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/training/{run_id}", max_queue=None,
                                      open_timeout=120, ping_interval=None) as ws:
            opened += 1
            if opened == clients:
                connected.set()
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "epoch_update" and message.get("epoch") in want:
                    stamps[message["epoch"]].append(time.perf_counter())
                    if message["epoch"] == last:
                        if len(stamps[last]) == clients:
                            all_got_last.set()
                        await all_got_last.wait()
                        return

    tasks = []
    for _ in range(clients):  # connect in small bursts: the accept backlog is finite
        tasks.append(asyncio.create_task(client()))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(connected.wait(), 300)
    await asyncio.sleep(2)  # every client has read its history
    ready.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    spreads = {e: (max(s) - min(s)) * 1000 for e, s in stamps.items() if s}
    return {"clients": clients, "messages": len(epochs),
            "received_each": {e: len(s) for e, s in stamps.items()},
            "spread_ms": {e: round(v, 1) for e, v in spreads.items()},
            "spread_p50_ms": round(statistics.median(spreads.values()), 1) if spreads else None,
            "spread_max_ms": round(max(spreads.values()), 1) if spreads else None}


def _ws_worker(port: int, run_id: str, clients: int, epochs: list[int], ready, out) -> None:
    pin(CLIENT_CPU)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, clients * 2 + 100)), hard))
    out.put(asyncio.run(_ws_clients(port, run_id, clients, epochs, ready, None)))


# -- the stack ------------------------------------------------------------------------------------------------


def publish(*items) -> None:
    from ctrops_common.testing import publish_events

    publish_events(*items)


def metrics(epoch: int):
    from ctrops_common.events import ModelMetrics

    return ModelMetrics(train_loss=0.5 / epoch, val_loss=0.4 / epoch, train_accuracy=0.9, val_accuracy=0.95,
                        auc=0.7 + epoch / 1000, ap=0.08, logloss=0.09, calibration=1.0, score=0.3,
                        precision=0.1, recall=0.3, f1=0.15, threshold=0.05)


def progress(run_id: str, epoch: int, total: int):
    from ctrops_common.events import Topic, TrainingProgress

    return (Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=epoch, total_epochs=total,
                                                      metrics=metrics(epoch)))


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}
    except OSError:
        return 0, {}


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="200,500")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ws-clients", type=int, default=1000)
    parser.add_argument("--ws-messages", type=int, default=10)
    parser.add_argument("--label", default="")
    parser.add_argument("--py-spy", metavar="OUT", help="record the gateway with py-spy (collapsed stacks) "
                        "during the status load at the highest rate")
    args = parser.parse_args()

    from ctrops_common.broker import EmbeddedBroker, free_port
    from ctrops_common.events import Topic, TrainingConfig, TrainingRequested, TrainingStarted, new_id

    tmp = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    broker = EmbeddedBroker(free_port(), log_file=tmp / "broker.log").start()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(broker.process.pid, {SERVER_CPU})
    port = free_port()
    env = {**os.environ, "CTROPS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CTROPS_DATA_DIR": str(tmp / "data"), "CTROPS_TOPIC_PREFIX": f"load{new_id()[:8]}.",
           "CTROPS_GATEWAY_PORT": str(port), "CTROPS_LOG_LEVEL": "WARNING",
           "CTROPS_WS_MAX_CONNECTIONS_PER_CLIENT": "10000"}
    os.environ.update({k: env[k] for k in ("CTROPS_KAFKA_BOOTSTRAP_SERVERS", "CTROPS_TOPIC_PREFIX", "CTROPS_DATA_DIR")})
    (tmp / "data").mkdir()
    gateway = subprocess.Popen([sys.executable, "-m", "ctrops_gateway"], env=env, preexec_fn=lambda: pin(SERVER_CPU),
                               stdout=open(tmp / "gateway.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    results: dict = {}
    try:
        wait_until(lambda: get_json(base + "/readyz")[0] == 200, 90, "the gateway to be ready")
        run_id, total = new_id(), 30
        config = TrainingConfig(epochs=total)
        publish((Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=new_id(),
                                                             parquet_location="x.parquet", config=config)),
                (Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="bench")),
                *[progress(run_id, e, total) for e in range(1, 11)])
        status_path = f"/api/train/status/{run_id}"
        wait_until(lambda: get_json(base + status_path)[1].get("current_epoch") == 10, 60, "the seeded epochs")

        http = []
        for path in (status_path, "/api/health"):
            for rate in [float(r) for r in args.rates.split(",")]:
                load(port, path, min(rate, 50), 2, args.connections)  # warm-up
                spy = None
                if args.py_spy and path == status_path and rate == max(float(r) for r in args.rates.split(",")):
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(gateway.pid),
                                            "-d", str(int(args.duration)), "-r", "200", "-f", "raw", "-o", args.py_spy,
                                            "--threads", "--nonblocking"], stdout=subprocess.DEVNULL)
                http.append(load(port, path, rate, args.duration, args.connections))
                if spy is not None:
                    spy.wait(60)
                print(json.dumps(http[-1]), flush=True)
        results["http"] = http

        if args.ws_clients:
            epochs = list(range(11, 11 + args.ws_messages))
            ctx = mp.get_context("spawn")
            ready, out = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=_ws_worker, args=(port, run_id, args.ws_clients, epochs, ready, out))
            proc.start()
            if not ready.wait(400):
                raise SystemExit("WebSocket clients did not connect")
            for epoch in epochs:
                publish(progress(run_id, epoch, total))
                time.sleep(0.5)
            results["websocket"] = out.get(timeout=300)
            proc.join()
            print(json.dumps(results["websocket"]), flush=True)
    finally:
        gateway.terminate()
        try:
            gateway.wait(15)
        except subprocess.TimeoutExpired:
            gateway.kill()
        broker.stop()

    results["setup"] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "label": args.label,
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "server": f"gateway (uvicorn) + tansu broker pinned to CPU {SERVER_CPU}",
        "client": f"open-loop generator, {args.connections} keep-alive connections, pinned to CPU {CLIENT_CPU}",
        "duration_s_per_rate": args.duration, "load_average_before": os.getloadavg(),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Scoring benchmark (issue 16): online predictions through the gateway and the scorer, batch scoring of a
600k-row file with its monitoring period, and the drift computation of that period. Side by side in one run.

Setup: the real stack (``python -m ctrops_common.stack``: embedded broker + the seven services as
processes, default settings except the ports, ``CTROPS_MAX_UPLOAD_MB=1000`` so the 695 MB file is
accepted, and no start-up sample), a temporary data folder. A real model is trained through it the
way a user does: ``POST /api/upload`` of the 60k generated file (seed 42), ``POST /api/train`` with
``{"config": {}}`` (the frontend's defaults: 10 epochs, batch 4096, LSTM 64, MLP 256-128, ...), and
the bench waits for the run's report (training, challenger, explanation done: the machine is idle
again). That run is the champion; both its models (``gbdt`` = LightGBM, ``lstm`` = LSTM+MLP) are used.

1. **Online**: ``POST /api/predict/champion?model=<kind>`` through the gateway, and the same request
   straight to the scorer's internal API (``POST /predict/champion``) to show the gateway's share.
   Every process of the stack is pinned to CPU 0 (each thread, ``os.sched_setaffinity``); the load
   generator is a separate process pinned to CPU 1, so the server never starves it. Open loop:
   requests scheduled at a fixed rate (50/s) over a pool of keep-alive HTTP/1.1 connections written
   with raw asyncio streams; each latency is measured from the request's *scheduled* time (queueing
   counts: no coordinated omission). Bodies are rows of the 600k scoring file as the CSV gives them
   (numbers as JSON numbers, ``seq`` as its comma-separated string, empty cells null, no ``clicked``):
   1 row and 100 rows per request. ``scorer s`` is the scorer's own ``seconds`` (body received to
   answer ready) from each answer. A 2 s warm-up precedes each measurement.
2. **Batch through the stack**: ``POST /api/predict/champion/batch?model=<kind>&period=2026-03`` with the
   600k-row labelled file (seed 7), then the job followed to ``completed``. Pins removed (the scorer
   may use both cores, as deployed). ``scorer s`` = ``ScoringDone.seconds`` (the scorer's
   ``score_file``: read, score, write, period accumulation); ``job wall`` = 202 -> completed (adds the
   drift reference built once per model and the period's finish); peak RSS = the scorer process's
   ``VmHWM``, reset just before the upload (``/proc/<pid>/clear_refs`` = 5), so it is the peak while
   that job ran (the process's baseline with both models loaded included).
3. **Batch in a fresh process** (after the stack stopped): the scorer's own ``batch.score_file`` on the
   Parquet file ingest wrote for that upload, in a subprocess per case, the model loaded as the
   scorer loads it (its default settings): each model with the monitoring period on and off, to show
   the period's cost; peak RSS = that process's ``ru_maxrss``.
4. **Drift**: in the period-on cases of 3, the reference built as the scorer builds it (a seeded
   48,000-row sample of the training file: sample, score with the model, ``drift.build_reference``),
   the 600k rows' ``PeriodAccumulator.add`` calls summed, and ``finish`` (metrics, AUC interval,
   per-feature tests).

Usage: .venv/bin/python bench/scoring.py [--duration 20] [--rate 50] [--batch-rows 600000] [--keep]
       [--reuse DIR] [--sections online,batch,inproc] [--label TEXT]
``--keep`` keeps the work folder (data, logs, the run); ``--reuse DIR`` starts the stack on a kept
folder and skips generating and training. ``--profile OUT`` writes a cProfile of each in-process case.
Prints one JSON object per measurement and a summary with the machine, the load and the setup.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU = 0
CLIENT_CPU = 1
KINDS = ("gbdt", "lstm")
TRAIN_SEED, SCORE_SEED = 42, 7


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


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- processes of the stack -------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def set_affinity(pids: list[int], cpus: set[int]) -> int:
    """Every thread of ``pids`` (a process's own affinity call moves only its main thread)."""
    threads = 0
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
                threads += 1
            except OSError:
                pass
    return threads


def process_of(root: int, module: str) -> int:
    for pid in descendants(root):
        try:
            if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise SystemExit(f"no {module} process under the stack")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def free_block(size: int) -> int:
    from ctrops_common.broker import free_port, port_open

    for _ in range(50):
        base = free_port()
        if base + size < 65000 and not any(port_open("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports")


# -- the load generator (its own process, CPU 1) ---------------------------------------------------------------

_SECONDS = re.compile(rb'"seconds":\s*([0-9.eE+-]+)')


async def _open_loop(port: int, path: str, body: bytes, rate: float, duration: float, connections: int) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    scorer: list[float] = []
    errors = {"status": 0, "io": 0}
    statuses: dict[int, int] = {}

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
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - scheduled)
            if status != 200:
                errors["status"] += 1
                statuses[status] = statuses.get(status, 0) + 1
            else:
                found = _SECONDS.search(answer, max(0, len(answer) - 200))
                if found:
                    scorer.append(float(found.group(1)))
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
    scorer_ms = [x * 1000 for x in scorer]
    return {"target_rps": rate, "requests": total, "achieved_rps": round(len(ms) / elapsed, 1),
            "p50_ms": round(percentile(ms, 50), 2), "p90_ms": round(percentile(ms, 90), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None,
            "scorer_p50_ms": round(percentile(scorer_ms, 50), 2), "scorer_p99_ms": round(percentile(scorer_ms, 99), 2),
            "non_200": errors["status"], "statuses": statuses, "io_errors": errors["io"]}


def _load_worker(port: int, path: str, body: bytes, rate: float, duration: float, connections: int, out) -> None:
    pin(CLIENT_CPU)
    out.put(asyncio.run(_open_loop(port, path, body, rate, duration, connections)))


def load(port: int, path: str, body: bytes, rate: float, duration: float, connections: int) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_load_worker, args=(port, path, body, rate, duration, connections, out))
    proc.start()
    result = out.get(timeout=duration * 20 + 120)
    proc.join()
    return result


def request_rows(path: Path, n: int) -> list[dict]:
    """The first ``n`` data rows of a CSV as a caller sends them: numbers, ``seq`` text, nulls; no label."""
    rows = []
    with open(path, newline="") as fh:
        for record in csv.DictReader(fh):
            row: dict = {}
            for column, value in record.items():
                if column == "clicked" or not column:
                    continue
                if column == "seq":
                    row[column] = value
                else:
                    row[column] = None if value == "" else (int(value) if value.lstrip("-").isdigit() else float(value))
            rows.append(row)
            if len(rows) == n:
                break
    return rows


# -- batch in a fresh process (section 3 and 4) -------------------------------------------------------------


def inproc_case(spec: dict) -> dict:
    """One batch job in this (fresh) process: the scorer's ``score_file`` with or without the period."""
    import resource

    import numpy as np

    from ctrops_common.dataset import SEQUENCE, TARGET, parquet_path
    from ctrops_common.storage import FileStore
    from ctrops_scorer.batch import score_file
    from ctrops_scorer.drift import build_reference
    from ctrops_scorer.models import load_model
    from ctrops_scorer.period import PeriodAccumulator
    from ctrops_scorer.predict import score_table
    from ctrops_scorer.settings import ScorerSettings

    import torch

    defaults = {name: f.default for name, f in ScorerSettings.model_fields.items()}
    torch.set_num_threads(defaults["scorer_torch_threads"])  # as the scorer's register() does
    store = FileStore(spec["data"])
    out: dict = {"model": spec["kind"], "period": spec["period"]}
    t = time.perf_counter()
    model = load_model(store, spec["location"], gbdt_threads=defaults["scorer_gbdt_threads"],
                       forward_rows=defaults["scorer_forward_rows"], compile_trees=spec.get("compile", "off"))
    out["load_s"] = round(time.perf_counter() - t, 3)
    if model.kind == "gbdt":
        compiled = model.model.compiled
        out["predictor"] = "compiled" if compiled is not None else "LightGBM"
        if compiled is not None:
            out["compile_s"], out["compile_from_cache"] = round(compiled.compile_s, 3), compiled.from_cache
    accumulator = None
    add_s = [0.0]
    if spec["period"]:
        from ctrops_scorer.reference import sample_rows

        columns = [*model.preprocess.feature_columns, SEQUENCE, TARGET]
        t0 = time.perf_counter()
        table = sample_rows(store.path(parquet_path(spec["train_file_id"])), defaults["scorer_reference_rows"],
                            defaults["scorer_reference_seed"], columns)
        t1 = time.perf_counter()
        probabilities, rows = score_table(model, table)
        t2 = time.perf_counter()
        categorical = set(model.preprocess.categorical_values or {}) or None
        reference = build_reference(rows.raw_tab, list(model.preprocess.feature_columns), probabilities, categorical,
                                    base_rate=float(model.preprocess.base_rate), seed=defaults["scorer_reference_seed"])
        t3 = time.perf_counter()
        out["reference"] = {"rows": reference.rows, "sample_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3),
                            "build_reference_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3)}
        del table, rows, probabilities
        accumulator = PeriodAccumulator(reference)
        add = accumulator.add

        def timed_add(*args, **kwargs):
            started = time.perf_counter()
            add(*args, **kwargs)
            add_s[0] += time.perf_counter() - started

        accumulator.add = timed_add
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    result = score_file(store, store.path(spec["parquet"]), f"{os.getpid():08x}" + "0" * 24, model,
                        accumulator=accumulator, chunk_rows=defaults["scorer_chunk_rows"],
                        threads=defaults["scorer_batch_threads"])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    out.update(rows=result.rows, seconds=round(result.seconds, 3), rows_per_s=round(result.rows / result.seconds))
    if accumulator is not None:
        t = time.perf_counter()
        period = accumulator.finish(run_id=spec["run_id"], model_kind=spec["kind"], period="2026-03", bucket="month",
                                    job_ids=["bench"], threshold=float(model.preprocess.threshold),
                                    baseline_auc=None, baseline_auc_ci_low=None, importance_ranks=None)
        out["drift"] = {"period_rows": period.rows, "accumulate_s": round(add_s[0], 3),
                        "finish_s": round(time.perf_counter() - t, 3),
                        "features": len(period.drift), "drifted": sum(d.drifted for d in period.drift),
                        "auc": period.metrics.auc, "calibration": period.metrics.calibration}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    predictions = store.path(result.location)
    out["predictions_sha"] = __import__("hashlib").sha256(predictions.read_bytes()).hexdigest()[:16]
    if spec.get("keep_probabilities"):  # to compare the predictors' answers afterwards
        import pyarrow.csv as pacsv

        np.save(spec["keep_probabilities"], pacsv.read_csv(predictions).column("probability").to_numpy())
    predictions.unlink()
    del np
    return out


def run_inproc(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--inproc", json.dumps(spec)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"in-process case {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the stack ------------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, work: Path, max_upload_mb: int) -> None:
        from ctrops_common.broker import free_port

        self.work = work
        self.gateway_port, self.broker_port, self.scorer_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("CTROPS_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")}
        env.update(CTROPS_GATEWAY_PORT=str(self.gateway_port), CTROPS_BROKER_PORT=str(self.broker_port),
                   CTROPS_SERVICE_PORT_BASE=str(free_block(8)), CTROPS_SCORER_API_PORT=str(self.scorer_port),
                   CTROPS_DATA_DIR=str(work / "data"), CTROPS_LOG_JSON="false", CTROPS_SAMPLE_ROWS="0",
                   CTROPS_MAX_UPLOAD_MB=str(max_upload_mb))
        self.log = open(work / "stack.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "ctrops_common.stack"], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.gateway_port}"
        self.scorer_url = f"http://127.0.0.1:{self.scorer_port}"

    def wait_healthy(self, client) -> None:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the stack exited:\n{(self.work / 'stack.log').read_text()[-3000:]}")
            try:
                if client.get(self.url + "/api/health").json()["status"] == "healthy":
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the stack did not become healthy in 300 s")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        return descendants(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def train_run(client, stack: Stack, csv_path: Path) -> dict:
    t = time.perf_counter()
    with open(csv_path, "rb") as fh:
        upload = client.post(stack.url + "/api/upload", files={"file": (csv_path.name, fh, "text/csv")})
    upload.raise_for_status()
    file_id = upload.json()["file_id"]
    train = client.post(stack.url + "/api/train", json={"file_id": file_id, "config": {}})
    train.raise_for_status()
    run_id = train.json()["run_id"]
    while True:  # the report means training and explanation are over: the CPUs are quiet again
        report = client.get(f"{stack.url}/api/report/ai/{run_id}")
        if report.status_code == 200:
            break
        if report.status_code not in (404, 409):
            raise SystemExit(f"training or report failed: {report.status_code} {report.text[:500]}")
        time.sleep(1)
    run = {"run_id": run_id, "train_file_id": file_id, "train_s": round(time.perf_counter() - t, 1)}
    status = client.get(f"{stack.url}/api/train/status/{run_id}").json()
    run["status"] = {k: status.get(k) for k in ("status", "champion", "current_epoch", "best_epoch") if k in status}
    return run


def model_locations(data: Path, run_id: str) -> dict[str, str]:
    return {kind: f"runs/{run_id}/model/{kind}" for kind in KINDS if (data / f"runs/{run_id}/model/{kind}").is_dir()}


def batch_job(client, stack: Stack, csv_path: Path, kind: str, scorer_pid: int) -> dict:
    Path(f"/proc/{scorer_pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
    baseline = status_kb(scorer_pid, "VmRSS")
    t0 = time.perf_counter()
    with open(csv_path, "rb") as fh:
        accepted = client.post(f"{stack.url}/api/predict/champion/batch", params={"model": kind, "period": "2026-03"},
                               files={"file": (csv_path.name, fh, "text/csv")})
    t_accepted = time.perf_counter()
    if accepted.status_code != 202:
        raise SystemExit(f"batch upload refused: {accepted.status_code} {accepted.text[:500]}")
    job = accepted.json()
    while True:
        state = client.get(f"{stack.url}/api/predict/jobs/{job['jobId']}").json()
        if state["status"] in ("completed", "failed"):
            break
        time.sleep(0.2)
    t_done = time.perf_counter()
    if state["status"] != "completed":
        raise SystemExit(f"batch job failed: {state}")
    return {"model": kind, "rows": job["rows"], "file_id": job["fileId"], "job_id": job["jobId"],
            "upload_and_ingest_s": round(t_accepted - t0, 1), "job_wall_s": round(t_done - t_accepted, 2),
            "scorer_s": state["seconds"], "rows_per_s": round(job["rows"] / state["seconds"]),
            "scorer_rss_before_mb": round(baseline / 1024), "scorer_peak_rss_mb": round(status_kb(scorer_pid, "VmHWM") / 1024),
            "period_id": state.get("periodId")}


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="online requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per online case")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--row-counts", default="1,100")
    parser.add_argument("--train-rows", type=int, default=60_000)
    parser.add_argument("--batch-rows", type=int, default=600_000)
    parser.add_argument("--sections", default="online,batch,inproc")
    parser.add_argument("--kinds", default=",".join(KINDS), help="models of the in-process cases")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, logs, the run)")
    parser.add_argument("--reuse", metavar="DIR", help="a folder kept by --keep: no generating, no training")
    parser.add_argument("--profile", metavar="DIR", help="cProfile each in-process case into DIR")
    parser.add_argument("--label", default="")
    parser.add_argument("--inproc", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inproc:
        print(json.dumps(inproc_case(json.loads(args.inproc))))
        return

    import httpx

    from ctrops_common.datagen import generate

    for stop in (signal.SIGTERM, signal.SIGINT):  # stop the stack on the way out (finally), even if backgrounded
        signal.signal(stop, lambda signum, _frame: sys.exit(128 + signum))
    sections = set(args.sections.split(","))
    started = datetime.now(timezone.utc)
    setup = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "label": args.label,
             "machine": f"{cpu_model()}, nproc {os.cpu_count()}, Python {platform.python_version()}",
             "load_average_before": load_average()}
    print(json.dumps(setup), flush=True)
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="ctrops-bench-scoring-"))
    meta_path = work / "bench.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    train_csv, score_csv = work / "train_60k.csv", work / f"score_{args.batch_rows // 1000}k.csv"
    if not train_csv.exists():
        generate(train_csv, args.train_rows, seed=TRAIN_SEED)
    if not score_csv.exists() and sections & {"online", "batch"}:
        t = time.perf_counter()
        generate(score_csv, args.batch_rows, seed=SCORE_SEED)
        print(f"generated {score_csv.name}: {score_csv.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t:.0f} s (not timed below)", flush=True)
    results: dict = {"setup": setup}
    client = httpx.Client(timeout=1800)
    stack = None
    try:
        if sections & {"online", "batch"} or "run_id" not in meta:
            stack = Stack(work, max_upload_mb=max(1000, int(score_csv.stat().st_size / 1e6) + 100)
                          if score_csv.exists() else 1000)
            stack.wait_healthy(client)
            if "run_id" not in meta:
                meta.update(train_run(client, stack, train_csv))
                meta_path.write_text(json.dumps(meta, indent=1))
                print(json.dumps({"trained": meta}), flush=True)
            results["run"] = meta
            one = {"rows": request_rows(score_csv if score_csv.exists() else train_csv, 1)}
            for kind in KINDS:  # both models loaded (and the run known) before anything is timed
                for _ in range(600):
                    answer = client.post(f"{stack.scorer_url}/predict/champion", params={"model": kind}, json=one)
                    if answer.status_code == 200:
                        break
                    time.sleep(0.5)
                else:
                    raise SystemExit(f"the scorer never served model={kind}: {answer.status_code} {answer.text[:300]}")

        if "online" in sections:
            pids = stack.pids()
            threads = set_affinity(pids, {SERVER_CPU})
            print(f"stack pinned to CPU {SERVER_CPU}: {len(pids)} processes, {threads} threads; load generator on "
                  f"CPU {CLIENT_CPU}", flush=True)
            online = []
            for kind in KINDS:
                for n in [int(x) for x in args.row_counts.split(",")]:
                    body = json.dumps({"rows": request_rows(score_csv, n)}).encode()
                    via_gateway = client.post(f"{stack.url}/api/predict/champion", params={"model": kind},
                                              content=body, headers={"content-type": "application/json"}).json()
                    direct = client.post(f"{stack.scorer_url}/predict/champion", params={"model": kind},
                                         content=body, headers={"content-type": "application/json"}).json()
                    same = [p["probability"] for p in via_gateway["predictions"]] == [
                        p["probability"] for p in direct["predictions"]]
                    for target, port, path in (
                            ("gateway", stack.gateway_port, f"/api/predict/champion?model={kind}"),
                            ("scorer", stack.scorer_port, f"/predict/champion?model={kind}")):
                        load(port, path, body, min(args.rate, 20), 2, args.connections)  # warm-up
                        figures = load(port, path, body, args.rate, args.duration, args.connections)
                        figures.update(model=kind, rows=n, target=target, body_bytes=len(body),
                                       gateway_equals_scorer=same)
                        online.append(figures)
                        print(json.dumps(figures), flush=True)
            set_affinity(stack.pids(), set(range(os.cpu_count() or 1)))
            results["online"] = online

        if "batch" in sections:
            scorer_pid = process_of(stack.process.pid, "ctrops_scorer")
            batch = []
            for kind in KINDS:
                figures = batch_job(client, stack, score_csv, kind, scorer_pid)
                figures["load_average_after"] = load_average()
                batch.append(figures)
                print(json.dumps(figures), flush=True)
                meta["score_file_id"] = figures["file_id"]
                meta_path.write_text(json.dumps(meta, indent=1))
            results["batch_stack"] = batch
            log_lines = [line for line in (work / "stack.log").read_text(errors="replace").splitlines()
                         if "rows scored by" in line]
            results["scorer_log"] = log_lines[-len(KINDS):]
    finally:
        if stack is not None:
            stack.stop()

    if "inproc" in sections:
        if "score_file_id" not in meta:
            raise SystemExit("no ingested scoring file yet: run the batch section first")
        from ctrops_common.dataset import parquet_path

        locations = model_locations(work / "data", meta["run_id"])
        inproc = []
        cases = [(kind, period, compile_trees) for kind in args.kinds.split(",") for period in (True, False)
                 for compile_trees in (("wait", "off") if kind == "gbdt" else ("off",))]
        for kind, period, compile_trees in cases:
            spec = {"data": str(work / "data"), "kind": kind, "location": locations[kind], "period": period,
                    "parquet": parquet_path(meta["score_file_id"]), "train_file_id": meta["train_file_id"],
                    "run_id": meta["run_id"], "compile": compile_trees,
                    "keep_probabilities": str(work / f"probabilities-{kind}-{compile_trees}.npy")}
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                spec["profile"] = str(Path(args.profile).resolve()
                                  / f"{kind}-{'period' if period else 'plain'}-{compile_trees}.prof")
            figures = run_inproc(spec)
            figures["load_average_after"] = load_average()
            inproc.append(figures)
            print(json.dumps(figures), flush=True)
        results["batch_inproc"] = inproc
        import numpy as np

        for kind in args.kinds.split(","):  # the compiled forest against LightGBM's own answers, same rows
            compiled, interpreted = (work / f"probabilities-{kind}-{c}.npy" for c in ("wait", "off"))
            if compiled.exists() and interpreted.exists():
                diff = float(np.max(np.abs(np.load(compiled) - np.load(interpreted))))
                results.setdefault("compiled_vs_lightgbm", {})[kind] = diff
                print(json.dumps({"model": kind, "max_abs_probability_difference_compiled_vs_lightgbm": diff}),
                      flush=True)

    setup["load_average_after"] = load_average()
    setup["setup"] = ("real stack (ctrops_common.stack), default settings; online: stack pinned to CPU "
                      f"{SERVER_CPU}, open-loop generator pinned to CPU {CLIENT_CPU}, {args.connections} keep-alive "
                      f"connections, {args.rate:g} req/s for {args.duration:g} s per case after a 2 s warm-up")
    print(json.dumps(results, indent=1))
    print_tables(results)
    if args.keep or args.reuse:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def print_tables(results: dict) -> None:
    if results.get("online"):
        print("\n| model | rows/request | target | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | scorer p50 / p99 ms | non-200 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results["online"]:
            print(f"| {r['model']} | {r['rows']} | {r['target']} | {r['achieved_rps']} | {r['p50_ms']} | {r['p90_ms']} | "
                  f"{r['p99_ms']} | {r['max_ms']} | {r['scorer_p50_ms']} / {r['scorer_p99_ms']} | {r['non_200']} |")
    if results.get("batch_stack"):
        print("\n| model | rows | upload+ingest s | job wall s | scorer s | rows/s | scorer RSS before / peak MB |")
        print("|---|---|---|---|---|---|---|")
        for r in results["batch_stack"]:
            print(f"| {r['model']} | {r['rows']:,} | {r['upload_and_ingest_s']} | {r['job_wall_s']} | {r['scorer_s']} | "
                  f"{r['rows_per_s']:,} | {r['scorer_rss_before_mb']} / {r['scorer_peak_rss_mb']} |")
    if results.get("batch_inproc"):
        print("\n| model | predictor | period | rows/s | score_file s | peak RSS MB | "
              "reference (sample / score / build) s | accumulate s | finish s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results["batch_inproc"]:
            ref, drift = r.get("reference"), r.get("drift")
            print(f"| {r['model']} | {r.get('predictor', 'torch')} | {'on' if r['period'] else 'off'} | "
                  f"{r['rows_per_s']:,} | {r['seconds']} | "
                  f"{r['peak_rss_mb']} | "
                  + (f"{ref['sample_s']} / {ref['score_s']} / {ref['build_reference_s']}" if ref else "-") + " | "
                  + (f"{drift['accumulate_s']} | {drift['finish_s']}" if drift else "- | -") + " |")


if __name__ == "__main__":
    main()

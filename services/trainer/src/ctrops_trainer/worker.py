"""The training process: one child process per attempt, forked from the trainer's fork server
(``multiprocessing``'s ``forkserver``, with torch and the training code preloaded: ``worker_imports``).

Why a process: training is minutes of CPU work. In a child it can never starve the
service's event loop (Kafka heartbeats, lease renewals, health checks), a cancel can
stop it, and a crash (out of memory) takes down only the attempt. The child talks to
the parent through one queue of plain tuples:

    ("info", {...})            data facts (rows, features, split sizes) once the data is ready
    ("epoch", n, {...}, {...}) metrics of each finished epoch, and the batch plan (requested vs used size)
    ("challenger_started", {}) the LSTM is done; the gradient-boosting challenger is being fitted
    ("promotion_started", {})  a retrain: both models are done; the replaced run's model is being scored
    ("done", {...})            both models are saved under runs/<run_id>/model/{lstm,gbdt}/; final numbers
    ("failed", reason)         the data or config cannot be trained on; the reason says what to fix
    ("cancelled",)             the stop event was set

This module imports neither torch nor the training code at import time: the trainer itself
never loads them. The fork server has, with ``OMP_WAIT_POLICY`` set first; each process sets
its own thread count.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"  # written into the model folder with the final numbers

# Where training processes come from: forked from a fork server that imported torch and the training
# code once (worker_imports). The server starts with the first training, not with the trainer.
PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload(["ctrops_trainer.worker_imports"])


def _die_with_the_trainer() -> None:
    """End this process at once when the trainer ends, even by kill -9: a training must not go on
    as an orphan. The fork server, not the trainer, is this process's parent in the kernel's sense,
    and it outlives the trainer while any training process is left. So a thread waits on
    multiprocessing's parent sentinel (the trainer's end of a pipe, closed when it dies) and kills
    this process; the parent-death signal covers the fork server's own death."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the fork server
    except OSError:
        pass  # not Linux: the sentinel below still stops us
    trainer = multiprocessing.parent_process()
    if trainer is None:  # called outside a multiprocessing child (a test calling run directly)
        return

    def watch() -> None:
        multiprocessing.connection.wait([trainer.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="trainer-watch", daemon=True).start()


def model_dir(data_dir: Path, run_id: str) -> Path:
    return data_dir / "runs" / run_id / "model"


def read_result(data_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The final numbers of a run whose model was already saved completely (else None)."""
    path = model_dir(data_dir, run_id) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_partial_models(data_dir: Path, run_id: str) -> None:
    """Temp folders of attempts that died before their rename."""
    run_folder = data_dir / "runs" / run_id
    if run_folder.is_dir():
        for leftover in run_folder.glob(".model-*.part"):
            shutil.rmtree(leftover, ignore_errors=True)


def _save_atomically(data_dir: Path, run_id: str, models: dict[str, Any], result: dict[str, Any]) -> None:
    """Every model of the run in its own sub-folder (``lstm/``, ``gbdt/``) and ``result.json``, made
    visible at once by one rename: a reader sees all of them or none."""
    target = model_dir(data_dir, run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".model-{uuid.uuid4().hex}.part"
    tmp.mkdir()
    for kind, save in models.items():
        save(tmp / kind)
    (tmp / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False))
    for file in tmp.rglob("*"):  # on disk before the rename makes the folder visible
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    if target.exists():  # an earlier attempt saved but died before reporting: replace it whole
        old = target.parent / f".model-{uuid.uuid4().hex}.old"
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, target)


def _plain(value: Any) -> Any:
    """numpy scalars -> plain numbers for JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def run(job: dict[str, Any], messages, stop) -> None:
    """Entry point of the child process. ``job``: run_id, parquet_path, data_dir, config, threads, seq_chunks,
    device, and for a retrain ``replaces`` (``promotion.Replaced`` as a dict)."""
    _die_with_the_trainer()
    started = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(job["threads"])

        from ctrops_common.events import TrainingConfig

        from .challenger import train_challenger
        from .data import read_training_file
        from .summary import summarise
        from .training import Cancelled, resolve_device, train

        device = str(resolve_device(job.get("device", "cpu")))  # a GPU that is not there fails here, at once
        messages.put(("environment", {"device": device, "threads": job["threads"], "torch": torch.__version__}))
        config = TrainingConfig.model_validate(job["config"])
        data = read_training_file(Path(job["parquet_path"]), config.max_seq_len)
        messages.put(("info", {
            "rows": data.rows,
            "features": len(data.feature_columns),
            "clicks": int(data.labels.sum()),
            "truncated_rows": data.truncated_rows,
            "ignored_columns": data.ignored_columns,
        }))

        def should_stop() -> bool:
            return stop.is_set()  # a trainer that died ends this process at once (_die_with_the_trainer)

        plan: dict[str, Any] = {}

        def on_plan(batch) -> None:
            plan.update(batch.model_dump(mode="json"))

        def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
            messages.put(("epoch", epoch, metrics, plan))

        result = train(data, config, seq_chunks=job["seq_chunks"], device=device, on_epoch=on_epoch,
                       should_stop=should_stop, on_plan=on_plan)
        messages.put(("challenger_started", {}))
        challenger = train_challenger(data, result.split, config, threads=job["threads"], should_stop=should_stop)
        summary = summarise(job["run_id"], config, data, result, challenger)
        if job.get("replaces"):
            from .promotion import Replaced, check_promotion
            from .summary import LABELS

            messages.put(("promotion_started", {}))
            champion = summary["champion"]
            val = result.split.val
            promotion = check_promotion(
                Replaced.from_job(job["replaces"]), Path(job["parquet_path"]), val, data.labels[val],
                challenger.val_probability if champion == "gbdt" else result.val_probability,
                new_label=f"new champion ({LABELS[champion]})",
            )
            summary["promotion"] = promotion.model_dump(mode="json")
        summary["duration_s"] = time.perf_counter() - started
        summary["threads"] = job["threads"]
        summary = json.loads(json.dumps(summary, default=_plain))
        from ctrops_common.ml import save_model

        _save_atomically(Path(job["data_dir"]), job["run_id"], {
            "lstm": lambda folder: save_model(folder, result.model, result.preprocess),
            "gbdt": challenger.model.save,
        }, summary)
        messages.put(("done", summary))
    except Cancelled:
        messages.put(("cancelled",))
    except MemoryError:
        messages.put(("failed", "training ran out of memory: lower batch_size or max_seq_len, or train on fewer rows"))
    except Exception as exc:  # noqa: BLE001 - everything else is reported, with the data errors worded for people
        from .data import DataError
        from .training import TrainingError

        if isinstance(exc, DataError):
            messages.put(("failed", f"the training data cannot be used: {exc}"))
        elif isinstance(exc, TrainingError):
            messages.put(("failed", str(exc)))
        elif type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError: the GPU's memory
            messages.put(("failed", "training ran out of GPU memory: lower batch_size or max_seq_len, "
                                    "or set CTROPS_TRAINER_DEVICE=cpu"))
        else:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            messages.put(("failed", f"training crashed: {detail}. The trainer log has the stack trace."))
            traceback.print_exc()
    finally:
        messages.close()
        messages.join_thread()

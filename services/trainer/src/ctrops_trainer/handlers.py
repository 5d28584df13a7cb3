"""Which events the trainer consumes and publishes.

Consumes ``training.requested`` (main group) and ``training.cancel.requested`` (a second
group, so a cancel is read even while this trainer is busy training). Publishes
``training.started`` per attempt (from attempt 2 on with why the run is retried and the
maximum), ``training.progress`` once per finished epoch (with the attempt number), then
``training.done`` or ``training.failed``.

A retrain (``TrainingRequested.replaces``) is trained like any run; the training process
then compares its champion with the replaced run's (``promotion``), and ``training.done``
says whether it was promoted: only then does MLflow's alias ``champion`` move to it.

The training itself runs in a child process (``worker.run``); this handler only
supervises it: relays its messages, renews the run's lease in ``trainer_runs``, watches
for cancel requests, and decides retry or failure when the child dies.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ctrops_common.bus import BrokerUnavailable, EventBus
from ctrops_common.events import (
    AucComparison,
    BatchPlan,
    ModelMetrics,
    Event,
    ModelResult,
    PromotionCheck,
    RetryCause,
    Topic,
    TrainingCancelRequested,
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import UnsafePath, check_id

from . import worker
from .data import DataError, check_training_file
from .promotion import NOT_COMPARED, Replaced
from .runs import RunStore
from .settings import TrainerSettings
from .tracking import RunTracking, Tracking, TrainingDataset

log = logging.getLogger(__name__)

FINAL_PUBLISH_WAIT_S = 120.0  # how long a run's end waits for a broker that is down


@dataclass
class Outcome:
    kind: str  # done | failed | cancelled | died | lost | stopping
    result: dict[str, Any] | None = None
    reason: str = ""


class Trainer:
    def __init__(self, runtime: ServiceRuntime, settings: TrainerSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.runs = RunStore(runtime.engine)
        self.tracking = Tracking(settings)
        self.worker_name = f"{runtime.instance}-{new_id()[:8]}"  # unique per process lifetime

    @property
    def bus(self) -> EventBus:
        return self.runtime.bus

    # -- training.requested -------------------------------------------------------

    async def on_requested(self, event: Event[TrainingRequested]) -> None:
        request = event.payload
        run_id = request.run_id
        try:
            check_id(run_id)
            parquet_path = self.runtime.store.path(request.parquet_location)
        except UnsafePath as exc:
            await self._publish_failed(run_id, f"the training request is invalid ({exc}); start a new training")
            return
        waiting = False
        died: str | None = None  # why this trainer's last attempt ended, when it retries the run itself
        while True:
            claim = await asyncio.to_thread(
                self.runs.claim, run_id, self.worker_name,
                self.settings.trainer_lease_timeout_s, self.settings.trainer_max_attempts,
            )
            if claim.action == "wait":  # another trainer holds a fresh lease on this run
                died = None  # its attempt comes between: ours is no longer the previous one
                if not waiting:
                    log.info("run %s is being trained by another trainer; waiting for its end or its lease", run_id)
                    waiting = True
                await asyncio.sleep(self.settings.trainer_poll_s)
                continue
            if claim.action == "completed":
                await self.bus.publish(Topic.TRAINING_DONE, TrainingDone.model_validate(claim.result),
                                       correlation_id=run_id)
                return
            if claim.action == "failed":
                await self.bus.publish(Topic.TRAINING_FAILED, TrainingFailed.model_validate(claim.result),
                                       correlation_id=run_id)
                return
            if claim.action == "cancelled":
                await self._finish_failed(run_id, None, "training was cancelled before it started", cancelled=True)
                return
            if claim.action == "exhausted":
                await self._finish_failed(
                    run_id, None,
                    f"the trainer stopped unexpectedly during {claim.attempt} attempt(s) (killed, restarted, out "
                    "of memory or an internal error in its log); try again, with a smaller batch_size or "
                    "max_seq_len if it keeps happening",
                )
                return
            retry = _retry(claim.attempt, claim.previous_status, died)
            try:
                outcome = await self._attempt(request, parquet_path, claim.attempt, claim.previous_mlflow_run_id,
                                              retry)
            except Exception:
                # e.g. the broker was unreachable for a publish: give the run back so the bus's
                # retry (here or on another trainer) starts the next attempt at once.
                await asyncio.to_thread(self.runs.release, run_id, self.worker_name)
                raise
            if outcome.kind == "died":
                if claim.attempt >= self.settings.trainer_max_attempts:
                    await self._finish_failed(
                        run_id, self.worker_name,
                        f"the training process died in each of {claim.attempt} attempt(s) (last: {outcome.reason}; "
                        "code -9 usually means out of memory): lower batch_size or max_seq_len",
                    )
                    return
                log.warning("training process of run %s died (%s); retrying (attempt %d of %d)", run_id,
                            outcome.reason, claim.attempt + 1, self.settings.trainer_max_attempts)
                died = outcome.reason
                await asyncio.to_thread(self.runs.release, run_id, self.worker_name)
                continue  # the next claim starts the next attempt
            return

    async def _attempt(self, request: TrainingRequested, parquet_path: Path, attempt: int,
                       previous_mlflow_run_id: str | None, retry: tuple[RetryCause, str] | None = None) -> Outcome:
        run_id = request.run_id
        data_dir = self.runtime.store.root
        worker.remove_partial_models(data_dir, run_id)
        config = request.config
        tracker = RunTracking(self.tracking)

        saved = worker.read_result(data_dir, run_id)
        if saved is not None:
            # An earlier attempt saved the model and died before reporting: report it, do not train again.
            log.info("run %s already has a saved model; reporting it", run_id)
            # Its attempt died before tracking it: this attempt's MLflow run logs and registers the saved models.
            tracker.begin(experiment=config.experiment_name, run_id=run_id, file_id=request.file_id, attempt=attempt,
                          config=config, previous_mlflow_run_id=previous_mlflow_run_id, replaces=request.replaces)
            await self._complete(request, saved, tracker, parquet_path)
            return Outcome("done", saved)

        try:
            await asyncio.to_thread(check_training_file, parquet_path)
        except DataError as exc:
            reason = f"the training data cannot be used: {exc}"
            await self._finish_failed(run_id, self.worker_name, reason)
            return Outcome("failed", reason=reason)

        started = TrainingStarted(run_id=run_id, attempt=attempt, worker=self.worker_name,
                                  max_attempts=self.settings.trainer_max_attempts,
                                  retry_cause=retry[0] if retry else None, retry_reason=retry[1] if retry else None)
        await self._publish_soft(Topic.TRAINING_STARTED, started, run_id)
        tracker.begin(experiment=config.experiment_name, run_id=run_id, file_id=request.file_id, attempt=attempt,
                      config=config, previous_mlflow_run_id=previous_mlflow_run_id, replaces=request.replaces)
        job = {
            "run_id": run_id,
            "parquet_path": str(parquet_path),
            "data_dir": str(data_dir),
            "config": config.model_dump(mode="json"),
            "threads": self.settings.trainer_threads,
            "seq_chunks": self.settings.trainer_seq_chunks,
            "device": self.settings.trainer_device,
        }
        replaced = self._replaced(request)
        if replaced is not None:
            job["replaces"] = asdict(replaced)
        outcome = await self._supervise(job, request, attempt, tracker)
        if tracker.mlflow_run_id is None:
            await tracker.flush(1.0)  # the id, if MLflow already answered
        if tracker.mlflow_run_id:
            await asyncio.to_thread(self.runs.set_mlflow_run, run_id, tracker.mlflow_run_id)

        if outcome.kind == "done":
            await self._complete(request, outcome.result or {}, tracker, parquet_path)
        elif outcome.kind == "failed":
            tracker.finish("FAILED", tags={"ctrops.failure": outcome.reason})
            await self._finish_failed(run_id, self.worker_name, outcome.reason)
        elif outcome.kind == "cancelled":
            tracker.finish("KILLED", tags={"ctrops.failure": "cancelled"})
            await self._finish_failed(run_id, self.worker_name, "training was cancelled", cancelled=True)
        elif outcome.kind == "lost":
            tracker.finish("KILLED", tags={"ctrops.failure": outcome.reason})
            log.warning("run %s: %s", run_id, outcome.reason)
        elif outcome.kind == "stopping":
            tracker.finish("KILLED", tags={"ctrops.failure": "trainer stopped"})
            await asyncio.to_thread(self.runs.release, run_id, self.worker_name)
            raise asyncio.CancelledError()  # leave the event uncommitted: another trainer picks it up
        else:  # died
            tracker.finish("FAILED", tags={"ctrops.failure": outcome.reason})
        return outcome

    async def _supervise(self, job: dict[str, Any], request: TrainingRequested, attempt: int,
                         tracker: RunTracking) -> Outcome:
        run_id = request.run_id
        messages = worker.PROCESSES.Queue()
        stop = worker.PROCESSES.Event()
        process = worker.PROCESSES.Process(target=worker.run, args=(job, messages, stop),
                                           name=f"train-{run_id[:8]}", daemon=True)
        process.start()  # forked by the fork server, which this starts at the first training
        poll = self.settings.trainer_poll_s
        next_renewal = time.monotonic() + poll
        stop_deadline: float | None = None
        outcome: Outcome | None = None
        try:
            while outcome is None:
                try:
                    message = await asyncio.to_thread(messages.get, True, min(0.5, poll))
                except queue.Empty:
                    message = None
                if message is not None:
                    outcome = await self._relay(message, request, attempt, tracker)
                    if outcome is not None:
                        break
                elif not process.is_alive():
                    try:  # the last messages may still be in the pipe
                        message = messages.get(timeout=0.5)
                    except queue.Empty:
                        return Outcome("died", reason=f"training process exited with code {process.exitcode}")
                    outcome = await self._relay(message, request, attempt, tracker)
                    continue
                # Every turn, also while epochs stream in: renew the lease, look for a cancel or a stop.
                now = time.monotonic()
                if self.runtime.stop_event.is_set() and stop_deadline is None:
                    stop.set()
                    stop_deadline = now + min(5.0, self.settings.trainer_stop_grace_s)
                if now >= next_renewal:
                    next_renewal = now + poll
                    ours, cancel = await asyncio.to_thread(self.runs.renew, run_id, self.worker_name)
                    if not ours:
                        return Outcome("lost", reason="another trainer took this run over (our lease expired)")
                    if cancel and stop_deadline is None:
                        log.info("run %s: cancel requested, stopping the training process", run_id)
                        stop.set()
                        stop_deadline = now + self.settings.trainer_stop_grace_s
                if stop_deadline is not None and now >= stop_deadline:
                    process.kill()
                    return Outcome("stopping" if self.runtime.stop_event.is_set() else "cancelled")
            if outcome.kind == "cancelled" and self.runtime.stop_event.is_set():
                return Outcome("stopping")
            return outcome
        finally:
            if process.is_alive():  # normally it exits right after its last message
                stop.set()
                await asyncio.to_thread(process.join, 3)
                if process.is_alive():
                    process.kill()
            await asyncio.to_thread(process.join, 5)
            messages.close()
            messages.cancel_join_thread()

    async def _relay(self, message: tuple, request: TrainingRequested, attempt: int,
                     tracker: RunTracking) -> Outcome | None:
        """Publish one child message; an Outcome when it was the last."""
        kind = message[0]
        if kind == "info":
            tracker.params(message[1], prefix="data")
            return None
        if kind == "environment":  # where the run trains: device, torch threads and version
            tracker.params(message[1], prefix="trainer")
            return None
        if kind == "epoch":
            epoch, metrics = message[1], message[2]
            batch = BatchPlan.model_validate(message[3]) if len(message) > 3 and message[3] else None
            await self._publish_soft(
                Topic.TRAINING_PROGRESS,
                TrainingProgress(run_id=request.run_id, attempt=attempt, epoch=epoch,
                                 total_epochs=request.config.epochs, metrics=ModelMetrics.model_validate(metrics),
                                 batch=batch),
                request.run_id,
            )
            tracker.epoch(epoch, metrics)
            if batch is not None and epoch == 1:  # requested vs used batch size, and why
                tracker.params(batch.model_dump(), prefix="batch")
            return None
        if kind == "challenger_started":
            log.info("run %s: LSTM+MLP done, fitting the gradient-boosting challenger", request.run_id)
            return None
        if kind == "promotion_started":
            log.info("run %s: both models done, scoring run %s's model on the same validation rows",
                     request.run_id, request.replaces)
            return None
        if kind == "done":
            return Outcome("done", result=message[1])
        if kind == "failed":
            return Outcome("failed", reason=message[1])
        if kind == "cancelled":
            return Outcome("cancelled")
        log.error("unknown message from the training process: %r", message[:1])
        return None

    def _replaced(self, request: TrainingRequested) -> Replaced | None:
        """A retrain's replaced run for the training process: its champion's folder, or why it has none."""
        if not request.replaces:
            return None
        if not request.replaces_model_location:
            return Replaced(request.replaces, problem="the retrain request named no model folder of the replaced run")
        try:
            folder = self.runtime.store.path(request.replaces_model_location)
        except UnsafePath as exc:
            return Replaced(request.replaces, problem=f"the replaced model's folder cannot be used ({exc})")
        return Replaced(request.replaces, model_path=str(folder))

    async def _complete(self, request: TrainingRequested, result: dict[str, Any], tracker: RunTracking,
                        parquet_path: Path) -> None:
        run_id = request.run_id
        store = self.runtime.store
        results = result.get("models", [])
        # kind -> its folder (runs/<run_id>/model/lstm/, .../gbdt/); a result from before the challenger: one folder
        folders = {m["kind"]: store.path(m["model_location"]) for m in results} or \
            {"lstm": worker.model_dir(store.root, run_id)}
        promotion = PromotionCheck.model_validate(result["promotion"]) if result.get("promotion") else None
        promoted = promotion.promoted if promotion is not None else True
        if promotion is not None:
            if promotion.method == NOT_COMPARED:
                log.warning("retrain %s replacing run %s: %s", run_id, promotion.replaced_run_id, promotion.reason)
            else:
                log.info("retrain %s replacing run %s: %s (%s)", run_id, promotion.replaced_run_id,
                         "promoted" if promoted else "NOT promoted", promotion.reason)
        tags = {"ctrops.replaces": request.replaces} if request.replaces else {}
        tracker.complete(models=folders, champion=result.get("champion", "lstm"),
                         dataset=TrainingDataset(request.file_id, parquet_path),
                         metrics={m["kind"]: m["metrics"] for m in results}, tags=tags, promote=promoted)
        mlflow_run_id = await tracker.flush(self.settings.trainer_mlflow_wait_s)
        logged = tracker.logged  # None: tracking off, MLflow unusable, or the wait ran out
        uris = logged.model_uris if logged else {}
        done = TrainingDone(
            run_id=run_id,
            file_id=request.file_id,
            model_location=result.get("model_location", f"runs/{run_id}/model"),
            metrics=ModelMetrics.model_validate(result["metrics"]),
            best_epoch=result["best_epoch"],
            epochs_run=result["epochs_run"],
            duration_s=result["duration_s"],
            experiment_name=request.config.experiment_name,
            mlflow_run_id=mlflow_run_id,
            config=request.config,
            champion=result.get("champion", "lstm"),
            models=[ModelResult.model_validate({**m, "model_uri": uris.get(m["kind"])}) for m in results],
            comparison=AucComparison.model_validate(result["comparison"]) if result.get("comparison") else None,
            batch=BatchPlan.model_validate(result["batch"]) if result.get("batch") else None,
            registered_model=logged.registered_model if logged else None,
            registered_version=logged.registered_version if logged else None,
            model_uri=logged.model_uri if logged else None,
            replaces=request.replaces,
            promoted=promoted,
            promotion=promotion,
        )
        if await asyncio.to_thread(self.runs.finish, run_id, self.worker_name, "completed",
                                   done.model_dump(mode="json")):
            await self._publish_final(Topic.TRAINING_DONE, done, run_id)
        else:
            log.warning("run %s finished here but another trainer owns it now; not reporting", run_id)

    async def _finish_failed(self, run_id: str, worker_name: str | None, reason: str, cancelled: bool = False) -> None:
        failed = TrainingFailed(run_id=run_id, reason=reason, cancelled=cancelled)
        if await asyncio.to_thread(self.runs.finish, run_id, worker_name, "failed", failed.model_dump(mode="json")):
            await self._publish_final(Topic.TRAINING_FAILED, failed, run_id)

    async def _publish_soft(self, topic: Topic, payload: Any, run_id: str) -> None:
        """A start or an epoch: lost (not retried) while the broker is down, so training goes on
        through a broker outage; the run's end is what must arrive."""
        try:
            await self.bus.publish(topic, payload, correlation_id=run_id)
        except BrokerUnavailable as exc:
            log.warning("run %s: %s not published, broker unavailable (%s); training goes on", run_id, topic, exc)

    async def _publish_final(self, topic: Topic, payload: Any, run_id: str) -> None:
        """The run's end, already recorded in trainer_runs: wait up to FINAL_PUBLISH_WAIT_S for the broker
        rather than fail the handler (a request replayed later re-reports it from the record too)."""
        deadline = time.monotonic() + FINAL_PUBLISH_WAIT_S
        while True:
            try:
                await self.bus.publish(topic, payload, correlation_id=run_id)
                return
            except BrokerUnavailable as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("run %s: %s waits for the broker (%s)", run_id, topic, exc)
                await asyncio.sleep(1.0)

    async def _publish_failed(self, run_id: str, reason: str) -> None:
        await self.bus.publish(Topic.TRAINING_FAILED, TrainingFailed(run_id=run_id, reason=reason),
                               correlation_id=run_id)

    # -- training.cancel.requested ------------------------------------------------------

    async def on_cancel(self, event: Event[TrainingCancelRequested]) -> None:
        try:
            check_id(event.payload.run_id)
        except UnsafePath:
            return  # nothing can be running under an invalid id
        await asyncio.to_thread(self.runs.request_cancel, event.payload.run_id)
        log.info("cancel requested for run %s", event.payload.run_id)

    async def listen_for_cancels(self) -> None:
        """A second consumer group: cancels are read even while the main consumer is busy training."""
        bus = self.runtime.bus_factory(self.settings, self.runtime.service, group_id=f"{self.bus.group_id}-cancel",
                                       processed=self.runtime.processed)
        bus.subscribe(Topic.TRAINING_CANCEL_REQUESTED, self.on_cancel)
        await bus.start()
        try:
            await bus.consume(self.runtime.stop_event)
        finally:
            await bus.stop()

    async def warm_up_tracking(self) -> None:
        await asyncio.wrap_future(self.tracking.warm_up())


def _retry(attempt: int, previous_status: str | None, died: str | None) -> tuple[RetryCause, str] | None:
    """Why attempt ``attempt`` exists (None for the first): for ``training.started`` and the client's log line."""
    if attempt <= 1:
        return None
    if died is not None:  # this trainer saw the previous attempt's training process die
        return "died", f"the training process of attempt {attempt - 1} died ({died})"
    if previous_status == "interrupted":
        return "interrupted", (f"attempt {attempt - 1} was given back unfinished (its trainer stopped or could "
                               "not reach the broker)")
    return "lease_expired", (f"the trainer of attempt {attempt - 1} stopped renewing its lease (killed or "
                             "restarted)")


def register(runtime: ServiceRuntime, settings: TrainerSettings) -> Trainer:
    """Subscribe this service's handlers on the runtime's bus."""
    trainer = Trainer(runtime, settings)
    runtime.bus.subscribe(Topic.TRAINING_REQUESTED, trainer.on_requested)
    runtime.add_background(trainer.listen_for_cancels)
    runtime.add_background(trainer.warm_up_tracking)
    return trainer

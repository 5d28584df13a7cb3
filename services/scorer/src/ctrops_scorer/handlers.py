"""Which events the scorer consumes and publishes, and the internal API beside them.

- ``training.done`` -> the run catalogue (durable); a promoted run becomes the champion, whose
  model is loaded in the background (and kept loaded) so the first request does not wait.
- ``explanation.done`` -> the run's feature order, the importance ranks of its monitoring periods.
- ``scoring.requested`` -> score the upload's Parquet file in chunks (a worker thread), write
  ``predictions_path(job_id)``, publish ``scoring.progress`` after each chunk, build the batch's
  monitoring period against the model's training rows (``period_path``; the same period scored
  again replaces it) and publish ``monitoring.period``, then ``scoring.done``; a file with a date
  column and no period asked for feeds one period per day/week/month of its rows, each stored
  and published, all listed in ``ScoringDone.period_ids``; or
  ``scoring.failed`` with the reason and the status the gateway answers. A job already finished
  (a redelivery) whose files are still in the store republishes its ``scoring.done``. A job for a
  run id not recorded yet (its ``training.done`` not read yet: topics are consumed in no global
  order) is parked in the database (``jobs.ParkedJobs``) and scored when the run is recorded, or
  fails with 404 after ``CTROPS_SCORER_PARK_TIMEOUT_S``; a restart resumes parked jobs.
- The internal HTTP API (``api.py``) on CTROPS_SCORER_API_HOST:CTROPS_SCORER_API_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import uvicorn

from ctrops_common.bus import BrokerUnavailable, PermanentError
from ctrops_common.dataset import period_path
from ctrops_common.events import (
    Event,
    ExplanationDone,
    ScoringDone,
    ScoringFailed,
    ScoringProgress,
    ScoringRequested,
    Topic,
    TrainingDone,
)
from ctrops_common.heap import release_free_memory
from ctrops_common.model_loading import LoadedModel
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import FileStore, UnsafePath, check_id, is_id

from .api import create_api
from .batch import BatchInputError, BatchResult, DateSplit, score_file, split_by_date
from .catalogue import RunCatalogue, RunEntry
from .drift import Reference
from .jobs import FinishedJobs, ParkedJob, ParkedJobs
from .metrics import ServingLatency, batch_rows_scored
from .models import ModelCache, ModelChoice, NoSuchModel, choose_model
from .online import OnlineScorer
from .period import PeriodAccumulator, period_label
from .reference import NoReference, model_reference
from .settings import ScorerSettings

log = logging.getLogger(__name__)

PERIOD_LABEL = re.compile(r"^\d{4}-(\d{2}|\d{2}-\d{2}|W\d{2})$")


class JobFailed(Exception):
    def __init__(self, reason: str, status_code: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class RunNotRecorded(Exception):
    """The job names a run id the scorer has not recorded (yet): the job is parked, not failed."""


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def job_period(request: ScoringRequested, requested_at: datetime) -> str:
    """The period label the job feeds: the one asked for, else the request's day/week/month
    (a file with a date column and no period asked for is split by date instead: ``split_by_date``)."""
    if request.period is not None:
        if not PERIOD_LABEL.match(request.period):
            raise JobFailed(f"period {request.period!r} is not a period label: use 2026-03, 2026-W11 or 2026-03-14")
        return request.period
    return period_label(requested_at, request.bucket)


def period_inputs(entry: RunEntry, choice: ModelChoice, model: LoadedModel) -> dict:
    """The model's numbers at training that a period is compared with."""
    result = choice.result
    metrics = result.metrics if result is not None else entry.done.metrics
    threshold = metrics.threshold if metrics.threshold is not None else float(model.preprocess.threshold)
    return {
        "threshold": float(threshold),
        "baseline_auc": metrics.auc,
        "baseline_auc_ci_low": result.auc_ci_low if result is not None else None,
        # The explainer explained the champion: its feature order ranks the champion's periods only.
        "importance_ranks": entry.importance_ranks() if choice.kind == entry.done.champion else None,
    }


def outputs_exist(store: FileStore, done: ScoringDone) -> bool:
    if not store.exists(done.predictions_location):
        return False
    for period_id in done.period_ids or ([done.period_id] if done.period_id else []):
        run_id, kind, period = period_id.split(":", 2)
        if not store.exists(period_path(run_id, kind, period)):
            return False
    return True


def register(runtime: ServiceRuntime, settings: ScorerSettings) -> None:
    """Subscribe the scorer's handlers and start its API and champion pre-load beside them."""
    store, bus = runtime.store, runtime.bus
    catalogue = RunCatalogue(runtime.engine)
    finished = FinishedJobs(runtime.engine)
    parked = ParkedJobs(runtime.engine)
    answering: set[str] = set()  # parked jobs being scored now (the consumer leaves their redeliveries)
    run_recorded = asyncio.Event()  # wakes the parked jobs' watcher
    cache = ModelCache(store, capacity=settings.scorer_cached_models, gbdt_threads=settings.scorer_gbdt_threads,
                       forward_rows=settings.scorer_forward_rows, compile_trees=settings.scorer_compile_trees,
                       torch_threads=settings.scorer_torch_threads)
    executor = ThreadPoolExecutor(settings.scorer_api_threads, thread_name_prefix="scorer-api")
    latency = ServingLatency()
    online = OnlineScorer(catalogue, cache, executor, latency, max_rows=settings.scorer_max_rows,
                          load_wait_s=settings.scorer_load_wait_s)
    runtime.heartbeat_extras = latency.heartbeat_extras
    background: set[asyncio.Task] = set()

    async def load_champion() -> None:
        entry = await asyncio.to_thread(catalogue.resolve, "champion")
        if entry is None:
            return
        try:
            choice = choose_model(entry.done)
            await cache.pin(choice)
            log.info("champion: the %s model of run %s is loaded", choice.kind, choice.run_id)
        except Exception as exc:  # noqa: BLE001 - requests will say what is wrong; the service stays up
            log.error("the champion of run %s cannot be loaded: %s: %s", entry.run_id, type(exc).__name__, exc)

    def in_background(coro) -> None:
        task = asyncio.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def on_training_done(event: Event[TrainingDone]) -> None:
        done = event.payload
        try:
            check_id(done.run_id)
        except UnsafePath as exc:
            raise PermanentError(f"training.done with an invalid run id: {exc}") from None
        await asyncio.to_thread(catalogue.record_done, done, event.time)
        online.forget_runs()
        log.info("run %s recorded (champion %s, promoted %s)", done.run_id, done.champion, done.promoted)
        if done.promoted:
            in_background(load_champion())  # never holds up the consumer
        run_recorded.set()

    async def on_explanation_done(event: Event[ExplanationDone]) -> None:
        payload = event.payload
        try:
            check_id(payload.run_id)
        except UnsafePath as exc:
            raise PermanentError(f"explanation.done with an invalid run id: {exc}") from None
        await asyncio.to_thread(catalogue.record_importance, payload.run_id,
                                [f.feature for f in payload.top_features])
        online.forget_runs()

    async def on_scoring_requested(event: Event[ScoringRequested]) -> None:
        request = event.payload
        try:
            job_id = check_id(request.job_id)
        except UnsafePath as exc:
            raise PermanentError(f"scoring.requested with an invalid job id: {exc}") from None
        if job_id in answering:
            return  # a redelivery of a parked job that is being scored now: that answers it
        if await answer(request, event.time) is False:
            if await asyncio.to_thread(parked.park, request, event.time):
                log.info("job %s waits for run %s, which the scorer has not recorded yet", job_id, request.run_id)
            run_recorded.set()  # the run may have been recorded meanwhile: look again at once

    async def answer(request: ScoringRequested, requested_at: datetime) -> bool:
        """Score the job and publish its answer; False (nothing published) when its run is not recorded yet."""
        job_id = request.job_id
        prior = await asyncio.to_thread(finished.get, job_id)
        if prior is not None and await asyncio.to_thread(outputs_exist, store, prior):
            log.info("job %s is already scored; announcing the stored result again", job_id)
            await bus.publish(Topic.SCORING_DONE, prior, correlation_id=job_id)
            return True
        try:
            done = await score_job(request, requested_at)
        except RunNotRecorded:
            return False  # nothing read yet (a parked job looked at again): no heap to give back
        except JobFailed as exc:
            await asyncio.to_thread(release_free_memory)
            await fail(job_id, exc.reason, exc.status_code)
            return True
        # A job frees hundreds of MB in pieces (chunks, the period's probabilities, its finish):
        # given back once all of it is freed, the next job's peak starts where this one did.
        await asyncio.to_thread(release_free_memory)
        await asyncio.to_thread(finished.put, done)
        await bus.publish(Topic.SCORING_DONE, done, correlation_id=job_id)
        return True

    async def fail(job_id: str, reason: str, status_code: int) -> None:
        log.warning("scoring job %s failed: %s", job_id, reason)
        await bus.publish(Topic.SCORING_FAILED, ScoringFailed(job_id=job_id, reason=reason[:2000],
                                                              status_code=status_code), correlation_id=job_id)

    async def answer_parked(job: ParkedJob) -> None:
        """A parked job whose run is recorded now, or whose wait is over."""
        request = job.request
        waited = (datetime.now(job.parked_at.tzinfo) - job.parked_at).total_seconds()
        answering.add(request.job_id)
        try:
            if not await answer(request, job.requested_at):
                if waited < settings.scorer_park_timeout_s:
                    return
                await fail(request.job_id, f"run {request.run_id} is not a completed training run the scorer knows "
                                           f"(waited {waited:.0f} s for it)", 404)
            await asyncio.to_thread(parked.release, request.job_id)
        finally:
            answering.discard(request.job_id)

    async def watch_parked() -> None:
        """Answer parked jobs when a run is recorded (and every poll, for the timeout); a failure
        (the broker away, say) leaves the job parked for the next look."""
        while not runtime.stop_event.is_set():
            run_recorded.clear()
            try:
                for job in await asyncio.to_thread(parked.waiting):
                    if runtime.stop_event.is_set():
                        break
                    await answer_parked(job)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bad moment
                log.warning("parked jobs: %s: %s (trying again)", type(exc).__name__, exc)
            waits = [asyncio.create_task(runtime.stop_event.wait()), asyncio.create_task(run_recorded.wait())]
            await asyncio.wait(waits, timeout=settings.scorer_park_poll_s, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    async def score_job(request: ScoringRequested, requested_at: datetime) -> ScoringDone:
        job_id = request.job_id
        period = job_period(request, requested_at)
        entry = await asyncio.to_thread(catalogue.resolve, request.run_id)
        if entry is None and is_id(request.run_id):
            raise RunNotRecorded(request.run_id)
        if entry is None:
            raise JobFailed(f"no {request.run_id} run yet: train a model first", 404)
        try:
            choice = choose_model(entry.done, request.model)
            model = await cache.load(choice)
        except NoSuchModel as exc:
            raise JobFailed(str(exc), 404) from None
        except Exception as exc:  # noqa: BLE001 - a corrupt or incompatible model folder
            raise JobFailed(f"the {choice.label} model of run {choice.run_id} cannot be loaded "
                            f"({type(exc).__name__}: {exc})", 500) from None
        try:
            parquet = store.path(request.parquet_location)
        except UnsafePath as exc:
            raise JobFailed(f"refusing an unsafe store location: {exc}") from None

        split: DateSplit | None = None
        if request.period is None:  # an explicit period wins over the file's dates
            try:
                split = await asyncio.to_thread(split_by_date, parquet, request.bucket,
                                                max_periods=settings.scorer_max_periods)
            except BatchInputError as exc:
                raise JobFailed(str(exc), exc.status_code) from None
            except Exception as exc:  # noqa: BLE001 - an unreadable file fails the same way again
                raise JobFailed(f"the file's dates could not be read: {type(exc).__name__}: {exc}", 422) from None
        reference = await reference_of(entry, choice, model)
        accumulator = periods = None
        if reference is not None and split is not None:
            periods = (split, split.accumulators(reference))
        elif reference is not None:
            accumulator = PeriodAccumulator(reference)
        loop = asyncio.get_running_loop()

        def progress(rows_done: int, rows_total: int) -> None:  # called from the worker thread
            loop.call_soon_threadsafe(in_background, publish_progress(job_id, rows_done, rows_total))

        try:
            result: BatchResult = await asyncio.to_thread(
                score_file, store, parquet, job_id, model, accumulator=accumulator,
                chunk_rows=settings.scorer_chunk_rows, threads=settings.scorer_batch_threads, progress=progress,
                periods=periods)
        except BatchInputError as exc:
            raise JobFailed(str(exc), exc.status_code) from None
        except Exception as exc:  # noqa: BLE001 - the same file would fail the same way again
            log.error("scoring job %s failed", job_id, exc_info=True)
            raise JobFailed(f"the file could not be scored: {type(exc).__name__}: {exc}", 500) from None
        batch_rows_scored(choice.kind, result.rows)
        log.info("job %s: %d rows scored by the %s model of run %s in %.2fs (%.0f rows/s)", job_id, result.rows,
                 choice.kind, choice.run_id, result.seconds, result.rows / max(result.seconds, 1e-9))

        fed: list[tuple[str, PeriodAccumulator]] = []
        if periods is not None:
            fed = [(label, acc) for label, acc in zip(periods[0].labels, periods[1]) if acc.rows]
        elif accumulator is not None and result.rows:
            fed = [(period, accumulator)]
        period_ids = []
        for label, acc in fed:  # in time order: the monitor reads a model's periods as they come
            period_ids.append(await store_period(acc, request, choice, entry, model, label))
        return ScoringDone(job_id=job_id, run_id=choice.run_id, model_kind=choice.kind, rows=result.rows,
                           predictions_location=result.location, seconds=round(result.seconds, 3),
                           period_id=period_ids[0] if period_ids else None, period_ids=period_ids)

    async def store_period(accumulator: PeriodAccumulator, request: ScoringRequested, choice: ModelChoice,
                           entry: RunEntry, model: LoadedModel, period: str) -> str:
        monitoring = await asyncio.to_thread(
            accumulator.finish, run_id=choice.run_id, model_kind=choice.kind, period=period,
            bucket=request.bucket, job_ids=[request.job_id], psi_threshold=settings.drift_psi_threshold,
            **period_inputs(entry, choice, model))
        location = period_path(choice.run_id, choice.kind, period)
        monitoring = monitoring.model_copy(update={"location": location})
        await asyncio.to_thread(store.write_json, location, monitoring.model_dump(mode="json"))
        await bus.publish(Topic.MONITORING_PERIOD, monitoring, correlation_id=choice.run_id)
        return monitoring.period_id

    async def reference_of(entry: RunEntry, choice: ModelChoice, model: LoadedModel) -> Reference | None:
        try:
            return await asyncio.to_thread(model_reference, store, entry.done, choice.kind, model,
                                           rows=settings.scorer_reference_rows, seed=settings.scorer_reference_seed)
        except NoReference as exc:
            log.warning("no monitoring period for this batch: %s", exc)
            return None

    async def publish_progress(job_id: str, rows_done: int, rows_total: int) -> None:
        try:
            await bus.publish(Topic.SCORING_PROGRESS,
                              ScoringProgress(job_id=job_id, rows_done=rows_done, rows_total=rows_total),
                              correlation_id=job_id)
        except BrokerUnavailable:
            pass  # progress is advisory; the job's end is not

    async def serve_api() -> None:
        config = uvicorn.Config(create_api(online), host=settings.scorer_api_host, port=settings.scorer_api_port,
                                log_config=None, access_log=False, timeout_graceful_shutdown=5)
        server = _ApiServer(config)
        serving = asyncio.create_task(server.serve())
        stop = asyncio.create_task(runtime.stop_event.wait())
        await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
        stop.cancel()
        if not runtime.stop_event.is_set() and not server.started:
            raise RuntimeError(f"the scorer API could not listen on {settings.scorer_api_host}:"
                               f"{settings.scorer_api_port}")
        executor.shutdown(wait=False, cancel_futures=True)

    bus.subscribe(Topic.TRAINING_DONE, on_training_done)
    bus.subscribe(Topic.EXPLANATION_DONE, on_explanation_done)
    bus.subscribe(Topic.SCORING_REQUESTED, on_scoring_requested)
    runtime.add_background(serve_api)
    runtime.add_background(load_champion)
    runtime.add_background(watch_parked)

"""MLflow tracking: one MLflow run per training attempt, never allowed to fail the training.

Runs in the service process (not in the training child): ``import mlflow`` and creating
the local SQLite store take seconds, paid once per service instead of once per run.
Every call goes through one worker thread, in order, so a slow or unreachable tracking
server delays only the tracking, never the training, its progress events or the event
loop; a failure is logged as a warning and the run goes on without tracking.

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under
``<data_dir>/mlflow/artifacts``; ``MLFLOW_TRACKING_URI`` points at a server instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ctrops_common.events import TrainingConfig

from .settings import TrainerSettings

log = logging.getLogger(__name__)

# Keep MLflow quiet and bounded: no telemetry, short HTTP timeouts and few retries.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")


def config_params(config: TrainingConfig) -> dict[str, str]:
    values = config.model_dump(exclude={"notifications", "experiment_name"})
    values["mlp_hidden"] = ",".join(str(v) for v in config.mlp_hidden)
    return {k: str(v) for k, v in values.items()}


class Tracking:
    """The service's MLflow connection (lazy) and its single worker thread."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.enabled = settings.trainer_mlflow_enabled
        self.uri = settings.tracking_uri()
        self.local = not settings.mlflow_tracking_uri
        self.artifact_root = settings.artifact_root()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self._client: Any = None
        self._retry_at = 0.0

    def submit(self, fn, *args) -> Future:
        return self._executor.submit(self._guarded, fn, *args)

    def _guarded(self, fn, *args) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a training
            log.warning("MLflow tracking failed (%s: %s); training goes on", type(exc).__name__, exc)
            return None

    def client(self) -> Any:
        """The MlflowClient, created on first use; None while MLflow is unusable (retried after 60 s)."""
        if not self.enabled:
            return None
        if self._client is None and time.monotonic() >= self._retry_at:
            try:
                from mlflow.tracking import MlflowClient

                if self.local:
                    Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)  # creates/migrates a local store now
                self._client = client
            except Exception as exc:  # noqa: BLE001
                self._retry_at = time.monotonic() + 60
                log.warning("MLflow at %s is not usable (%s: %s); runs are not tracked for now",
                            self.uri, type(exc).__name__, exc)
        return self._client

    def warm_up(self) -> Future:
        """Import MLflow and open the store in the background, before the first run needs it."""
        return self.submit(self.client)

    def experiment_id(self, name: str) -> str | None:
        client = self.client()
        if client is None:
            return None
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            kwargs = {"artifact_location": self.artifact_root} if self.local else {}
            return client.create_experiment(name, **kwargs)
        except Exception:  # noqa: BLE001 - another trainer created it a moment ago
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class RunTracking:
    """The MLflow run of one training attempt; every method only queues work."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking
        self.mlflow_run_id: str | None = None
        self._last: Future | None = None

    def _queue(self, fn, *args) -> None:
        self._last = self.tracking.submit(fn, *args)

    def begin(self, *, experiment: str, run_id: str, file_id: str, attempt: int, config: TrainingConfig,
              previous_mlflow_run_id: str | None = None) -> None:
        self._queue(self._begin, experiment, run_id, file_id, attempt, config, previous_mlflow_run_id)

    def _begin(self, experiment, run_id, file_id, attempt, config, previous) -> None:
        client = self.tracking.client()
        if client is None:
            return
        if previous:  # the attempt before us died: close its MLflow run honestly
            try:
                client.set_terminated(previous, status="KILLED")
            except Exception:  # noqa: BLE001
                pass
        from mlflow.entities import Param

        experiment_id = self.tracking.experiment_id(experiment)
        run = client.create_run(
            experiment_id,
            run_name=f"{run_id[:8]}-attempt{attempt}",
            tags={"ctrops.run_id": run_id, "ctrops.file_id": file_id, "ctrops.attempt": str(attempt)},
        )
        self.mlflow_run_id = run.info.run_id
        client.log_batch(self.mlflow_run_id, params=[Param(k, v) for k, v in config_params(config).items()])

    def params(self, values: dict[str, Any], prefix: str) -> None:
        """Logged as ``<prefix>.<name>`` beside the config's own params."""
        self._queue(self._params, values, prefix)

    def _params(self, values: dict[str, Any], prefix: str) -> None:
        client = self.tracking.client()
        if client is None or self.mlflow_run_id is None:
            return
        from mlflow.entities import Param

        params = [Param(f"{prefix}.{k}", str(v)[:500]) for k, v in values.items()]
        client.log_batch(self.mlflow_run_id, params=params)

    def epoch(self, step: int, metrics: dict[str, Any]) -> None:
        self._queue(self._epoch, step, dict(metrics))

    def _epoch(self, step: int, metrics: dict[str, Any]) -> None:
        client = self.tracking.client()
        if client is None or self.mlflow_run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
        client.log_batch(self.mlflow_run_id, metrics=batch)

    def finish(self, status: str, model_folder: Path | None = None, tags: dict[str, str] | None = None) -> None:
        self._queue(self._finish, status, model_folder, tags or {})

    def _finish(self, status: str, model_folder: Path | None, tags: dict[str, str]) -> None:
        client = self.tracking.client()
        if client is None or self.mlflow_run_id is None:
            return
        for key, value in tags.items():
            client.set_tag(self.mlflow_run_id, key, value[:5000])
        if model_folder is not None and model_folder.is_dir():
            # model.pt + preprocess.json (features, fill values, seq window and scale, rates).
            client.log_artifacts(self.mlflow_run_id, str(model_folder), artifact_path="model")
        client.set_terminated(self.mlflow_run_id, status=status)

    async def flush(self, timeout_s: float) -> str | None:
        """Wait (bounded) for the queued calls; the MLflow run id if one was created."""
        if self._last is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._last), timeout_s)
            except asyncio.TimeoutError:
                log.warning("MLflow tracking still busy after %.0fs; not waiting for it", timeout_s)
        return self.mlflow_run_id

"""MLflow tracking: one MLflow run per training attempt, never allowed to fail the training.

Runs in the service process (not in the training child): ``import mlflow`` and creating
the local SQLite store take seconds, paid once per service instead of once per run.
Every call goes through one worker thread, in order, so a slow or unreachable tracking
server delays only the tracking, never the training, its progress events or the event
loop; a failure is logged as a warning and the run goes on without tracking.

A finished run logs both of its models with their MLflow flavors (the LSTM+MLP with
``mlflow.pytorch``, the LightGBM challenger with ``mlflow.lightgbm``), each with a
signature, an input example of real rows and its ``preprocess.json`` in the MLmodel
metadata; the training file as the run's dataset input; and registers the champion as a
new version of one registered model, moving the alias ``champion`` to it
(``RunTracking.complete``; its outcome is ``RunTracking.logged``). A retrain's run is tagged
``ctrops.replaces`` (the run it replaces); its champion is registered as a version all the
same, but the alias moves only when it was promoted (``promote``); every version is tagged
``ctrops.promoted`` true or false.

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under
``<data_dir>/mlflow/artifacts``; ``MLFLOW_TRACKING_URI`` points at a server instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ctrops_common.events import TrainingConfig

from .settings import TrainerSettings

log = logging.getLogger(__name__)

# Keep MLflow quiet and bounded: no telemetry, short HTTP timeouts and few retries.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in service logs

CHAMPION_ALIAS = "champion"
EXAMPLE_ROWS = 5  # rows of the training file logged as each model's input example
FLAVORS = {"lstm": "pytorch", "gbdt": "lightgbm"}


@dataclass(frozen=True)
class TrainingDataset:
    """The training file of a run, logged as the MLflow run's dataset input."""

    file_id: str
    path: Path


@dataclass
class LoggedModels:
    """What ``RunTracking.complete`` logged; fields stay None/empty where MLflow failed."""

    model_uris: dict[str, str] = field(default_factory=dict)  # kind -> models:/m-... (the logged model)
    champion: str | None = None
    registered_model: str | None = None
    registered_version: int | None = None
    model_uri: str | None = None  # models:/<registered model>/<version>: the champion's version
    promoted: bool = True  # whether the alias ``champion`` was to move to that version
    dataset_digest: str | None = None
    seconds: float = 0.0  # wall time of the logging (models, dataset, registration)


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
        self.registered_model = settings.trainer_registered_model
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
        """Import MLflow (with the model flavors) and open the store in the background, before
        the first run needs them."""
        return self.submit(self._warm_up)

    def _warm_up(self) -> Any:
        client = self.client()
        if client is not None:
            import mlflow.lightgbm  # noqa: F401 - seconds of imports paid here, not by the first run
            import mlflow.pytorch  # noqa: F401
        return client

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
        self.run_id: str | None = None  # ours (ctrops), from ``begin``
        self.logged: LoggedModels | None = None  # set by ``complete`` once its logging ran
        self._last: Future | None = None

    def _queue(self, fn, *args) -> None:
        self._last = self.tracking.submit(fn, *args)

    def begin(self, *, experiment: str, run_id: str, file_id: str, attempt: int, config: TrainingConfig,
              previous_mlflow_run_id: str | None = None, replaces: str | None = None) -> None:
        self.run_id = run_id
        self._queue(self._begin, experiment, run_id, file_id, attempt, config, previous_mlflow_run_id, replaces)

    def _begin(self, experiment, run_id, file_id, attempt, config, previous, replaces=None) -> None:
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
        tags = {"ctrops.run_id": run_id, "ctrops.file_id": file_id, "ctrops.attempt": str(attempt)}
        if replaces:
            tags["ctrops.replaces"] = replaces  # a retrain: linked to the run it replaces from its start
        run = client.create_run(experiment_id, run_name=f"{run_id[:8]}-attempt{attempt}", tags=tags)
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
        """End the run (FAILED, KILLED, ...); a completed run ends with ``complete`` instead."""
        self._queue(self._finish, status, model_folder, tags or {})

    def _finish(self, status: str, model_folder: Path | None, tags: dict[str, str]) -> None:
        client = self.tracking.client()
        if client is None or self.mlflow_run_id is None:
            return
        for key, value in tags.items():
            client.set_tag(self.mlflow_run_id, key, value[:5000])
        if model_folder is not None and model_folder.is_dir():
            client.log_artifacts(self.mlflow_run_id, str(model_folder), artifact_path="model")
        client.set_terminated(self.mlflow_run_id, status=status)

    def complete(self, models: dict[str, Path], champion: str, dataset: TrainingDataset | None = None,
                 metrics: dict[str, dict[str, Any]] | None = None, tags: dict[str, str] | None = None,
                 promote: bool = True) -> None:
        """End a completed run: log each model folder (kind -> folder) with its flavor, the dataset,
        each model's final ``metrics`` (kind -> name -> value), register ``champion`` (the alias
        ``champion`` moved to it only when ``promote``); then FINISHED. ``tags`` go on the run and
        the registered version. The outcome is in ``self.logged`` once ``flush`` returns (None if
        MLflow did not answer)."""
        self._queue(self._complete, dict(models), champion, dataset, dict(metrics or {}), dict(tags or {}), promote)

    def _complete(self, models: dict[str, Path], champion: str, dataset: TrainingDataset | None,
                  metrics: dict[str, dict[str, Any]], tags: dict[str, str], promote: bool = True) -> None:
        client = self.tracking.client()
        if client is None or self.mlflow_run_id is None:
            return
        started = time.perf_counter()
        run_id = self.mlflow_run_id
        logged = LoggedModels(champion=champion, promoted=promote)
        try:
            import mlflow

            # The flavors' log_model and register_model use MLflow's process-wide URIs; this
            # service has one store, and only this thread logs.
            mlflow.set_tracking_uri(self.tracking.uri)
            mlflow.set_registry_uri(self.tracking.uri)
            # The run active on this thread: the flavors create their logged models in its
            # experiment (else in the Default one, whose artifacts land in ./mlruns).
            with mlflow.start_run(run_id=run_id):
                dataset_entity = None
                if dataset is not None:
                    dataset_entity = _step("dataset", log_dataset, client, run_id, dataset)
                    logged.dataset_digest = dataset_entity.digest if dataset_entity is not None else None
                for kind, folder in models.items():
                    parquet = dataset.path if dataset is not None else None
                    info = _step(f"{kind} model", log_ctr_model, client, run_id, kind, Path(folder), parquet,
                                 metrics.get(kind, {}), dataset_entity)
                    if info is not None:
                        logged.model_uris[kind] = info.model_uri
                if champion in logged.model_uris:
                    version_tags = {"ctrops.run_id": self.run_id or "", "mlflow.run_id": run_id, **tags}
                    version = _step("champion registration", register_champion, client,
                                    self.tracking.registered_model, logged.model_uris[champion], champion,
                                    version_tags, promote)
                    if version is not None:
                        logged.registered_model = self.tracking.registered_model
                        logged.registered_version = version
                        logged.model_uri = f"models:/{logged.registered_model}/{version}"
            run_tags = {"ctrops.champion": champion, "ctrops.promoted": _flag(promote), **tags}
            if logged.model_uri:
                run_tags["ctrops.model_uri"] = logged.model_uri
            for key, value in run_tags.items():
                client.set_tag(run_id, key, str(value)[:5000])
        finally:
            logged.seconds = time.perf_counter() - started
            self.logged = logged
            client.set_terminated(run_id, status="FINISHED")
        log.info("MLflow: run %s logged %s, registered %s in %.1fs", run_id, sorted(logged.model_uris),
                 logged.model_uri, logged.seconds)

    async def flush(self, timeout_s: float) -> str | None:
        """Wait (bounded) for the queued calls; the MLflow run id if one was created."""
        if self._last is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._last), timeout_s)
            except asyncio.TimeoutError:
                log.warning("MLflow tracking still busy after %.0fs; not waiting for it", timeout_s)
        return self.mlflow_run_id


# -- what a completed run logs (called on the tracking thread) ---------------------------


def _step(label: str, fn, *args) -> Any:
    """One logging step; a failure is a warning and the others still run."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a training
        log.warning("MLflow: logging the %s failed (%s: %s); the run goes on without it",
                    label, type(exc).__name__, exc)
        return None


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, first 32 hex digits (MLflow keeps at most 36)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:32]


def _arrow_colspec(name: str, arrow_type) -> dict[str, Any]:
    import pyarrow as pa

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return {"type": "array", "items": {"type": "long"}, "name": name, "required": False}
    if pa.types.is_integer(arrow_type):
        kind = "long"
    elif pa.types.is_floating(arrow_type):
        kind = "double"
    elif pa.types.is_boolean(arrow_type):
        kind = "boolean"
    else:
        kind = "string"
    return {"type": kind, "name": name, "required": False}


def log_dataset(client: Any, run_id: str, dataset: TrainingDataset) -> Any:
    """The training file as the run's dataset input: name = file id, digest of its bytes, rows and columns."""
    import pyarrow.parquet as pq
    from mlflow.entities import Dataset, DatasetInput, InputTag

    parquet = pq.ParquetFile(dataset.path)
    schema = parquet.schema_arrow
    entity = Dataset(
        name=dataset.file_id,
        digest=file_digest(dataset.path),
        source_type="local",
        source=json.dumps({"uri": dataset.path.resolve().as_uri()}),
        schema=json.dumps({"mlflow_colspec": [_arrow_colspec(f.name, f.type) for f in schema]}),
        profile=json.dumps({"num_rows": parquet.metadata.num_rows, "num_columns": len(schema.names),
                            "file_id": dataset.file_id, "bytes": dataset.path.stat().st_size}),
    )
    tags = [InputTag("mlflow.data.context", "training"), InputTag("ctrops.file_id", dataset.file_id)]
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
    return entity


def example_inputs(parquet: Path | None, preprocess, rows: int = EXAMPLE_ROWS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first rows of the training file in model form: (n, F) filled float64 features, (n, L) raw
    tokens (most recent last, right-padded with 0) and (n,) lengths. Without a file: one row of
    fill values and an empty sequence."""
    width = int(preprocess.max_seq_len)
    fill = np.asarray(preprocess.fill_values, dtype=np.float64)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    if parquet is None:
        return fill[None, :].copy(), np.zeros((1, width)), np.zeros(1, dtype=np.int64)
    import pyarrow.parquet as pq

    file = pq.ParquetFile(parquet)
    present = set(file.schema_arrow.names)
    columns = [c for c in preprocess.feature_columns if c in present]
    batch = next(file.iter_batches(batch_size=rows, columns=[*columns, "seq"]))
    n = batch.num_rows
    x = np.full((n, len(fill)), np.nan)
    for j, name in enumerate(preprocess.feature_columns):
        if name in present:
            x[:, j] = batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    x = np.where(np.isfinite(x), x, fill)
    tokens = np.zeros((n, width))
    lengths = np.zeros(n, dtype=np.int64)
    for i, seq in enumerate(batch.column("seq").to_pylist()):
        recent = [t for t in (seq or []) if t is not None][-width:] if width else []
        tokens[i, :len(recent)] = recent
        lengths[i] = len(recent)
    return x, tokens, lengths


def _requirements(*packages: str) -> list[str]:
    """Exact pins of the installed versions (no inference: that would load the model in a subprocess)."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={package_metadata.version(name)}")
        except package_metadata.PackageNotFoundError:
            continue
    return pins


def log_ctr_model(client: Any, run_id: str, kind: str, folder: Path, parquet: Path | None,
                  metrics: dict[str, Any], dataset: Any) -> Any:
    """Log one saved model folder with its MLflow flavor; returns MLflow's ModelInfo."""
    from dataclasses import asdict

    import pandas as pd
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    from ctrops_common.model_loading import METADATA_KEY, load_ctr_model

    loaded = load_ctr_model(folder)
    if loaded.kind != kind:
        raise ValueError(f"{folder} holds a {loaded.kind} model, not {kind}")
    preprocess = loaded.preprocess
    x_tab, tokens, lengths = example_inputs(parquet, preprocess)
    common = {
        "name": kind,
        "run_id": run_id,
        "metadata": {METADATA_KEY: {"kind": kind, "preprocess": asdict(preprocess)}},
        "tags": {"ctrops.kind": kind},
    }
    if kind == "lstm":
        import mlflow.pytorch
        import torch

        from ctrops_common.mlflow_lstm import LstmPyfunc, input_columns

        wrapper = LstmPyfunc(loaded.model, preprocess).eval()
        example = pd.DataFrame(np.column_stack([x_tab, tokens, lengths]), columns=input_columns(preprocess))
        with torch.inference_mode():
            output = wrapper(torch.tensor(example.to_numpy(dtype=np.float32))).numpy()
        info = mlflow.pytorch.log_model(
            wrapper, signature=infer_signature(example, output), input_example=example,
            serialization_format="pickle",  # keeps encode_seq/head; pt2 would keep forward only
            pip_requirements=_requirements("torch", "numpy", "pandas", "cloudpickle", "ctrops-common"),
            **common,
        )
    elif kind == "gbdt":
        import mlflow.lightgbm

        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        gbdt = loaded.model
        features = gbdt.features(x_tab, gbdt.encode_seq(tokens, lengths))
        example = pd.DataFrame(features.astype(np.float64), columns=gbdt.feature_names)
        output = gbdt.booster.predict(example.to_numpy(), num_threads=1)
        # Every input may be NaN (a seq feature with nothing to say, a missing value: LightGBM's
        # own missing branch), whatever the five example rows happen to hold.
        inputs = Schema([ColSpec("double", name, required=False) for name in gbdt.feature_names])
        signature = ModelSignature(inputs=inputs, outputs=infer_signature(example, output).outputs)
        info = mlflow.lightgbm.log_model(
            gbdt.booster, signature=signature, input_example=example,
            pip_requirements=_requirements("lightgbm", "numpy", "pandas", "scikit-learn"),
            **common,
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    now = int(time.time() * 1000)
    linked = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset is not None else {}
    values = [Metric(f"{kind}.{k}", float(v), now, 0, model_id=info.model_id, **linked)
              for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)]
    if values:
        client.log_batch(run_id, metrics=values)
    return info


def _flag(value: bool) -> str:
    return "true" if value else "false"


def register_champion(client: Any, name: str, model_uri: str, kind: str, tags: dict[str, str],
                      promote: bool = True) -> int:
    """A new version of ``name`` from the logged model, tagged ``ctrops.promoted``; the alias
    ``champion`` moves to it only when ``promote`` (a retrain whose champion lost to the model it
    replaces leaves the alias where it is). Earlier versions stay."""
    import mlflow

    version = mlflow.register_model(model_uri, name, await_registration_for=0,
                                    tags={"ctrops.kind": kind, **{k: str(v) for k, v in tags.items()},
                                          "ctrops.promoted": _flag(promote)})
    if promote:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    registered = client.get_registered_model(name)
    if not registered.description:
        client.update_registered_model(name, description=(
            "CTR champion of each ctrops training run: the better of the run's LSTM+MLP and LightGBM "
            f"on validation AUC. Alias '{CHAMPION_ALIAS}' is the newest promoted champion: every ordinary "
            "run's, and a retrain's only when it is not worse than the model it replaces."))
    return int(version.version)

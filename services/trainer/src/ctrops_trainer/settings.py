"""Settings of the trainer service (environment variables with the CTROPS_ prefix)."""

from __future__ import annotations

from pydantic import Field

from ctrops_common.settings import ServiceSettings, env_alias


class TrainerSettings(ServiceSettings):
    trainer_threads: int = Field(
        2, ge=1, le=256,
        description="torch threads of a training process (CTROPS_TRAINER_THREADS); match the cores it may use.",
    )
    trainer_device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="Where training runs: auto (the GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.",
    )
    trainer_max_attempts: int = Field(
        2, ge=1, le=10,
        description="Tries of one run whose trainer died mid-run (kill -9, out of memory) before it is failed.",
    )
    trainer_lease_timeout_s: float = Field(
        30.0, gt=0.5, le=3600,
        description="A running run whose trainer has not renewed its lease this long is taken over by another.",
    )
    trainer_poll_s: float = Field(
        1.0, gt=0, le=60,
        description="How often a running training renews its lease and checks for a cancel request.",
    )
    trainer_seq_chunks: int = Field(
        4, ge=1, le=64,
        description="Length-sorted chunks the LSTM runs per batch, each trimmed to its own longest sequence.",
    )
    trainer_stop_grace_s: float = Field(
        15.0, gt=0, le=600,
        description="How long a cancelled training may take to stop on its own before it is terminated.",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=env_alias("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; unset: a local SQLite store under DATA_DIR/mlflow.",
    )
    trainer_mlflow_enabled: bool = Field(
        True, description="Track every run in MLflow (failures there never fail the training)."
    )
    trainer_registered_model: str = Field(
        "ctrops-ctr", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="MLflow registered model each run's champion becomes a new version of (alias 'champion').",
    )
    trainer_mlflow_wait_s: float = Field(
        120.0, ge=0, le=3600,
        description="How long a finished run waits for its MLflow logging before reporting done anyway.",
    )

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir.resolve() / 'mlflow' / 'mlflow.db')}"

    def artifact_root(self) -> str:
        return (self.data_dir.resolve() / "mlflow" / "artifacts").as_uri()

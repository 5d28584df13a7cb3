"""Settings of the scorer service (environment variables with the CTROPS_ prefix)."""

from typing import Literal

from pydantic import Field

from ctrops_common.settings import ServiceSettings, env_alias


class ScorerSettings(ServiceSettings):
    scorer_api_host: str = Field(
        "127.0.0.1", description="Bind address of the internal prediction API (the gateway proxies it; not public)."
    )
    scorer_api_port: int = Field(8090, ge=0, le=65535, description="Port of the internal prediction API.")
    scorer_max_rows: int = Field(
        10_000, ge=1000, le=1_000_000, description="Most rows one POST /predict request may carry (413 above)."
    )
    scorer_api_threads: int = Field(
        2, ge=1, le=64, description="Worker threads that parse and score online requests (never the event loop)."
    )
    scorer_load_wait_s: float = Field(
        5.0, ge=0, le=120,
        description="How long a request waits for a model that is not loaded yet before answering 503 + Retry-After.",
    )
    scorer_cached_models: int = Field(
        4, ge=1, le=64, description="Models kept loaded (the champion always; the others least recently used)."
    )
    scorer_torch_threads: int = Field(1, ge=1, le=256, description="torch intra-op threads for scoring.")
    scorer_gbdt_threads: int = Field(1, ge=1, le=256, description="LightGBM prediction threads of online requests.")
    scorer_batch_threads: int = Field(
        2, ge=1, le=256,
        description="LightGBM prediction threads of a batch job (its chunks are large enough to gain from a second core).",
    )
    scorer_compile_trees: Literal["background", "wait", "off"] = Field(
        "background",
        description="The LightGBM model compiled to native code (lleaves), used once checked equal to LightGBM on "
                    "rows at every split threshold: background (serve on LightGBM until then), wait (a load waits "
                    "for it), off. Three times faster scoring; a failed compile or check keeps LightGBM.",
    )
    scorer_forward_rows: int = Field(
        512, ge=16, le=1_000_000,
        description="Rows per model forward pass. The LSTM holds its input projection for every step of every row of a "
                    "pass (rows x 128 steps x 4 x hidden floats: 1 GB at 8,192 rows, 268 MB at 2,048, 67 MB at 512), "
                    "which sets the peak memory of a 600k-row batch (1.88 GB at 8,192; 1.31 GB at 2,048 and 1.16 GB at "
                    "512, where it is also faster: 6,905 -> 8,740 rows/s; bench/scoring.py).")
    scorer_chunk_rows: int = Field(
        25_000, ge=100, le=1_000_000,
        description="Rows of a batch file read, scored and written at a time (bounds a batch job's memory: three "
                    "chunks are in flight; at 50,000 a 600k-row LightGBM job peaked 235 MB higher, no faster).",
    )
    scorer_reference_rows: int = Field(
        48_000, ge=100, le=1_000_000,
        description="Training rows (a seeded sample) that drift is measured against, per model.",
    )
    scorer_max_periods: int = Field(
        400, ge=1, le=5000,
        description="Most monitoring periods one batch file's date column may split it into (422 above).",
    )
    scorer_park_timeout_s: float = Field(
        900.0, ge=1, le=86_400,
        description="How long a batch job for a run the scorer has not recorded yet waits for the run's "
                    "training.done before it fails with 404.",
    )
    scorer_park_poll_s: float = Field(
        5.0, gt=0, le=600, description="How often parked batch jobs are looked at (a recorded run wakes them at once).",
    )
    scorer_reference_seed: int = Field(20260314, ge=0, le=2**31 - 1, description="Seed of the reference sample.")
    drift_psi_threshold: float = Field(
        0.2, gt=0, le=10,
        validation_alias=env_alias("drift_psi_threshold"),
        description="PSI from which a feature counts as drifted in a monitoring period.",
    )

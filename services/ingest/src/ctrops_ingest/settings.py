"""Settings of the ingest service (environment variables with the CTROPS_ prefix)."""

from pydantic import Field

from ctrops_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    ingest_block_mb: float = Field(
        4, gt=0, le=256,
        description="CSV read per block, in MB: larger blocks cost memory, smaller ones per-block overhead.",
    )
    ingest_row_group_rows: int = Field(
        16_384, ge=1_024, le=4_000_000, description="Rows per Parquet row group of the training copy."
    )
    ingest_max_categories: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Distinct values coded per text column; later new values are treated as missing.",
    )
    ingest_max_segment_values: int = Field(
        200, ge=1, le=100_000, description="Values kept per segment table of profile.json (busiest first)."
    )

"""Settings of the reporter service (environment variables with the CTROPS_ prefix).

The money assumptions live here so that every won figure in a report can be traced to a
named, configurable number that the report itself prints (docs/reports.md explains them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from ctrops_common.settings import ServiceSettings, env_alias


class MoneyAssumptions(ServiceSettings):
    """Campaign figures the ROI estimate rests on; none of them comes from the data.

    These are the platform's only money assumptions: the gateway's marketer dashboard and
    ``make demo`` show the figures report.json carries, never an estimate of their own.
    """

    report_monthly_impressions: int = Field(
        1_000_000, ge=1, le=10**12, description="Impressions the campaign buys per month."
    )
    report_cpm_krw: float = Field(
        6_000.0, gt=0, le=10**7,
        description="Media cost per 1,000 impressions (KRW); fixes the spend. 6,000 = CPC 300 at a 2% CTR.",
    )
    report_cpc_krw: float = Field(
        300.0, gt=0, le=10**7,
        description="Price per click (KRW) the advertiser would pay under CPC buying; shown beside the effective CPC.",
    )
    report_conversion_rate: float = Field(
        0.03, gt=0, le=1, description="Share of clicks that convert (fraction)."
    )
    report_conversion_value_krw: float = Field(
        40_000.0, gt=0, le=10**9, description="Revenue of one conversion (KRW)."
    )
    report_targeted_share: float = Field(
        0.2, gt=0, le=1,
        description="Share of the impressions moved to the audience the model selects (a pilot, not the whole budget).",
    )
    report_min_segment_rows: int = Field(
        30, ge=1, le=10**9, description="Segments with fewer rows are too noisy to recommend."
    )


class ReporterSettings(MoneyAssumptions):
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=env_alias("openai_api_key", "OPENAI_API_KEY"),
        description="Key of an OpenAI-compatible server; unset: the deterministic Korean narrative.",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=env_alias("openai_base_url", "OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:8080/v1); unset: api.openai.com.",
    )
    llm_model: str = Field("gpt-4o-mini", min_length=1, max_length=200, description="Chat model that writes the narrative.")
    llm_timeout_s: float = Field(30.0, gt=0, le=600, description="Time limit of one LLM call.")
    llm_max_attempts: int = Field(3, ge=1, le=10, description="LLM tries (errors, timeouts, malformed answers).")
    llm_backoff_s: float = Field(1.0, ge=0, le=60, description="First wait between LLM tries; doubles each try.")
    llm_response_format: Literal["json_object", "json_schema"] = Field(
        "json_object",
        description="json_object works on most OpenAI-compatible servers; json_schema asks for strict structured output.",
    )

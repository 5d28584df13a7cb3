"""Settings of the explainer service (environment variables with the CTROPS_ prefix)."""

from pydantic import Field

from ctrops_common.settings import ServiceSettings, env_alias

from .config import ExplainConfig


class ExplainerSettings(ServiceSettings):
    explainer_sample_rows: int = Field(
        100, ge=4, le=20_000,
        description="Validation rows explained with LIME for an LSTM (stratified: clicks included).",
    )
    explainer_click_share: float = Field(
        0.5, gt=0, lt=1,
        description="Share of clicked rows in the explained sample (capped by the clicks the file has).",
    )
    explainer_lime_samples: int = Field(
        5000, ge=100, le=200_000,
        description="The most perturbed samples LIME draws around each explained row (a convergence test picks "
                    "fewer when they suffice).",
    )
    explainer_lime_min_samples: int = Field(
        500, ge=100, le=200_000, description="LIME samples of the convergence pilot, and the fewest used."
    )
    explainer_lime_tolerance: float = Field(
        0.1, gt=0, le=1,
        description="Convergence target: a row's largest weight standard error over its largest |weight|.",
    )
    explainer_background_rows: int = Field(
        2000, ge=50, le=200_000, description="Rows LIME samples feature values from (the data distribution)."
    )
    explainer_seq_bank_size: int = Field(
        256, ge=2, le=20_000,
        description="Other users' sequences a perturbation may swap in for the explained row's own `seq`.",
    )
    explainer_seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed of sampling, LIME and the bootstrap.")
    explainer_bootstrap: int = Field(
        500, ge=50, le=100_000, description="Bootstrap resamples of validation rows for the 95% intervals."
    )
    explainer_permutation_repeats: int = Field(
        2, ge=1, le=100, description="Shuffles per feature in the held-out permutation test."
    )
    explainer_eval_rows: int = Field(
        12_000, ge=100, le=2_000_000,
        description="Validation rows (a seeded sample when there are more) for TreeSHAP and the directions' "
                    "click rates.",
    )
    explainer_permutation_rows: int = Field(
        5_000, ge=100, le=2_000_000,
        description="Validation rows of the held-out permutation test (every click up to half of them, then "
                    "non-clicks).",
    )
    explainer_correlation_top_k: int = Field(
        10, ge=2, le=100, description="Most important features shown in the correlation matrix."
    )
    explainer_correlation_rows: int = Field(
        50_000, ge=10, le=5_000_000, description="Rows the Pearson correlations are computed on."
    )
    explainer_correlation_threshold: float = Field(
        0.3, gt=0, le=1, description="|r| from which a pair of features is listed as correlated."
    )
    explainer_batch_rows: int = Field(
        8192, ge=16, le=1_000_000, description="Rows per model forward pass."
    )
    explainer_torch_threads: int = Field(
        2, ge=1, le=256, description="torch intra-op threads for the explainer's scoring."
    )

    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=env_alias("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI the trainer registers models in; unset: the local SQLite store under "
                    "DATA_DIR/mlflow (the trainer's default).",
    )

    def tracking_uri(self) -> str:
        """The trainer's store, resolved exactly as the trainer does (services/trainer settings)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir.resolve() / 'mlflow' / 'mlflow.db')}"

    def explain_config(self) -> ExplainConfig:
        return ExplainConfig(
            sample_rows=self.explainer_sample_rows,
            click_share=self.explainer_click_share,
            lime_samples=self.explainer_lime_samples,
            lime_min_samples=self.explainer_lime_min_samples,
            lime_tolerance=self.explainer_lime_tolerance,
            background_rows=self.explainer_background_rows,
            seq_bank_size=self.explainer_seq_bank_size,
            seed=self.explainer_seed,
            bootstrap=self.explainer_bootstrap,
            permutation_repeats=self.explainer_permutation_repeats,
            eval_rows=self.explainer_eval_rows,
            permutation_rows=self.explainer_permutation_rows,
            top_k=self.explainer_correlation_top_k,
            correlation_rows=self.explainer_correlation_rows,
            correlation_threshold=self.explainer_correlation_threshold,
            batch_rows=self.explainer_batch_rows,
            torch_threads=self.explainer_torch_threads,
        )

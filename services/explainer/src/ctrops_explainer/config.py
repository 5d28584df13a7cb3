"""How the explainer explains (``ExplainConfig``) and how the trainer split the run's rows (``SplitSpec``).

Their own module, free of the numerical stack: the settings and the handlers read them at start,
while ``pipeline`` (torch, SciPy, LIME, scikit-learn: seconds of imports) is imported by the first
run to explain, so an explainer that starts and is not asked pays none of it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExplainConfig:
    sample_rows: int = 100  # LIME (LSTM): explained validation rows
    click_share: float = 0.5
    lime_samples: int = 5000  # the most LIME perturbations per row (the convergence test picks fewer)
    lime_min_samples: int = 500
    lime_tolerance: float = 0.1
    background_rows: int = 2000
    seq_bank_size: int = 256
    seed: int = 42
    bootstrap: int = 500
    permutation_repeats: int = 2
    eval_rows: int = 12_000  # validation rows (uniform sample) for TreeSHAP and the directions
    direction_rows: int = 300  # LSTM: rows of the partial dependence that gives the direction of effect
    permutation_rows: int = 5_000  # validation rows of the permutation test: every click (up to half), then non-clicks
    top_k: int = 10
    correlation_rows: int = 50_000
    correlation_threshold: float = 0.3
    batch_rows: int = 8192
    torch_threads: int = 2


@dataclass(frozen=True)
class SplitSpec:
    """How the trainer split the run's rows (training.done's config)."""

    validation_split: float = 0.2
    seed: int = 42

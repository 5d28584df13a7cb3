"""Prometheus series of the scorer and the serving p95 its heartbeat carries.

- ``ctrops_prediction_latency_seconds{model}``: one online request, body received to answer
  ready (parsing, validation and scoring of all its rows);
- ``ctrops_prediction_rows_total{model, mode}``: rows scored, ``mode`` online or batch.

``model`` is the model kind (lstm / gbdt): a bounded label, never a run id.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from prometheus_client import Counter, Histogram

MODEL_KINDS = ("lstm", "gbdt")
MODES = ("online", "batch")

PREDICTION_LATENCY = Histogram(
    "ctrops_prediction_latency_seconds",
    "Online prediction request time, body received to answer ready",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
PREDICTION_ROWS = Counter("ctrops_prediction_rows_total", "Rows scored", ["model", "mode"])

for _kind in MODEL_KINDS:  # born at 0, so a first increase is visible to rate()/increase()
    PREDICTION_LATENCY.labels(_kind)
    for _mode in MODES:
        PREDICTION_ROWS.labels(_kind, _mode)


class ServingLatency:
    """Online request latencies over a sliding window; its p95 goes into the heartbeat."""

    def __init__(self, window_s: float = 300.0, max_samples: int = 20_000) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def observe(self, kind: str, seconds: float, rows: int) -> None:
        PREDICTION_LATENCY.labels(kind).observe(seconds)
        PREDICTION_ROWS.labels(kind, "online").inc(rows)
        self._samples.append((time.monotonic(), seconds * 1000.0))

    def p95_ms(self) -> float | None:
        cutoff = time.monotonic() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        if not self._samples:
            return None
        return float(np.percentile([ms for _, ms in self._samples], 95))

    def heartbeat_extras(self) -> dict[str, object]:
        p95 = self.p95_ms()
        return {} if p95 is None else {"latency_p95_ms": round(p95, 3)}


def batch_rows_scored(kind: str, rows: int) -> None:
    PREDICTION_ROWS.labels(kind, "batch").inc(rows)

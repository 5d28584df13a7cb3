"""API traffic over a sliding window: request count, errors and latency percentiles.

Fed by the HTTP middleware, read by the heartbeat (the monitor's response-time alert)
and by the engineer dashboard's bottleneck table.

Routes that wait for workers by design (a CSV upload waits for ingest's validation, a batch
scoring upload likewise, a PDF waits for the reporter) are kept out of ``latency_p95_ms``, the
figure the response-time alert reads: a 60k-row upload taking 3 s is not a slow API. They stay
in ``latency_by_route_ms`` and ``routes()``. The Prometheus rule ``CtropsApiSlow`` leaves out
the same routes.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

# Route templates (as the middleware labels them) that wait for workers by design.
WAITS_FOR_WORKERS = frozenset({
    "/api/upload",  # POST: ingest validates the file before the answer
    "/api/predict/{run_id}/batch",  # POST: the same, for a file to score
    "/api/report/pdf/{run_id}",  # GET: waits for the reporter's PDF
    "/api/report/generate-pdf/{run_id}",  # POST: the same
})


class Traffic:
    def __init__(self, window_s: float = 300.0, max_samples: int = 50_000) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, str, float, bool]] = deque(maxlen=max_samples)
        self.requests_total = 0
        self.errors_total = 0

    def observe(self, route: str, seconds: float, failed: bool) -> None:
        self._samples.append((time.monotonic(), route, seconds * 1000.0, failed))
        self.requests_total += 1
        self.errors_total += int(failed)

    def _recent(self) -> list[tuple[float, str, float, bool]]:
        cutoff = time.monotonic() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return list(self._samples)

    def summary(self) -> dict[str, object]:
        recent = self._recent()
        interactive = [s[2] for s in recent if s[1] not in WAITS_FOR_WORKERS]
        latencies = np.array(interactive) if interactive else np.array([0.0])
        by_route: dict[str, list[float]] = {}
        for _, route, ms, _ in recent:
            by_route.setdefault(route, []).append(ms)
        return {
            "requests_total": self.requests_total,
            "request_errors_total": self.errors_total,
            "latency_p95_ms": float(np.percentile(latencies, 95)),
            "latency_by_route_ms": {r: float(np.percentile(v, 95)) for r, v in by_route.items()},
        }

    def routes(self) -> dict[str, dict[str, float]]:
        """Per route: count, mean and max latency (ms) over the window."""
        stats: dict[str, dict[str, float]] = {}
        for _, route, ms, failed in self._recent():
            entry = stats.setdefault(route, {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "errors": 0})
            entry["count"] += 1
            entry["total_ms"] += ms
            entry["max_ms"] = max(entry["max_ms"], ms)
            entry["errors"] += int(failed)
        for entry in stats.values():
            entry["avg_ms"] = entry["total_ms"] / entry["count"]
        return stats

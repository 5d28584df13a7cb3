"""System health from heartbeats: liveness per service, API traffic, CPU and memory.

Pure functions and small in-memory structures; no Kafka, no database.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class InstanceBeat:
    """The newest heartbeat of one instance of a service."""

    service: str
    instance: str
    seen_at: datetime  # the heartbeat's own time (never later than when we got it)
    beat: dict[str, Any]

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.seen_at).total_seconds())


@dataclass
class TrafficWindow:
    """Gateway request counters per instance over a sliding window.

    Heartbeats carry cumulative counters since the gateway started; the difference
    between the oldest and newest sample in the window is the traffic of that window.
    A counter that went down means the instance restarted: its newest value counts.
    """

    window_s: float
    _samples: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)

    def add(self, instance: str, at: float, requests_total: int, errors_total: int) -> None:
        samples = self._samples.setdefault(instance, deque(maxlen=10_000))
        samples.append((at, requests_total, errors_total))

    def totals(self, now: float) -> tuple[int, int]:
        requests = errors = 0
        for instance in list(self._samples):
            samples = self._samples[instance]
            while samples and samples[0][0] < now - self.window_s:
                samples.popleft()
            if not samples:
                del self._samples[instance]
                continue
            first, last = samples[0], samples[-1]
            reset = last[1] < first[1] or last[2] < first[2]
            requests += last[1] if reset else last[1] - first[1]
            errors += last[2] if reset else last[2] - first[2]
        return requests, errors


def _clamp_percent(value: float | None) -> float:
    if value is None or value != value:  # None or NaN
        return 0.0
    return float(min(100.0, max(0.0, value)))


def resource_use(live: list[InstanceBeat]) -> tuple[float, float]:
    """(CPU %, memory %) of the busiest host among live instances, 0..100."""
    cpu = 0.0
    memory = 0.0
    for item in live:
        host_cpu = item.beat.get("host_cpu_percent")
        cpu = max(cpu, _clamp_percent(host_cpu if host_cpu is not None else item.beat.get("cpu_percent")))
        memory = max(memory, _clamp_percent(item.beat.get("memory_percent")))
    return cpu, memory


def api_rates(requests: int, errors: int) -> tuple[float, float]:
    """(success %, error %) of API requests; no traffic counts as fully successful."""
    if requests <= 0:
        return 100.0, 0.0
    error_pct = _clamp_percent(100.0 * errors / requests)
    return round(100.0 - error_pct, 3), round(error_pct, 3)


def gateway_p95_ms(live: list[InstanceBeat]) -> float | None:
    """The worst p95 latency among live gateway replicas (None: no live gateway reported one)."""
    values = [
        float(b.beat["latency_p95_ms"])
        for b in live
        if b.service == "gateway" and b.beat.get("latency_p95_ms") is not None
    ]
    values = [v for v in values if v == v]  # drop NaN
    return max(values) if values else None


def status_of(service_down: bool, api_problem: bool, slow: bool) -> str:
    """critical: a service is down or the API fails; degraded: the API is slow; else healthy."""
    if service_down or api_problem:
        return "critical"
    if slow:
        return "degraded"
    return "healthy"

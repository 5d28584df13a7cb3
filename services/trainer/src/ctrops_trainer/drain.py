"""Wait until this trainer trains nothing: the Kubernetes preStop hook of the trainer pod.

Kubernetes runs the hook before it sends SIGTERM, and SIGTERM makes a trainer give its run
back (the training process is stopped within 5 s, the run is released and its event left
uncommitted, so another trainer starts it again from the beginning as its next attempt).
Scaling trainers down (KEDA, on Kafka lag) picks the pod to stop without knowing whether it
trains, so the hook holds the stop until the pod is idle: it reads the pod's own /metrics
and returns once no event has been in flight for ``--idle-polls`` polls in a row, or when
``--max-wait-s`` has passed (the pod's terminationGracePeriodSeconds must be longer), or at
once when the trainer does not answer (nothing left to protect).

    python -m ctrops_trainer.drain --max-wait-s 10740
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from ctrops_common.observability import EVENTS_IN_FLIGHT
from ctrops_common.service import DEFAULT_PORTS

SERVICE = "trainer"


def in_flight(metrics_text: str) -> float:
    """Events the trainer is handling now (a training.requested stays in flight for the whole run)."""
    name = EVENTS_IN_FLIGHT._name  # noqa: SLF001 - the gauge's exported name, whatever it becomes
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name and sample.labels.get("service") == SERVICE:
                total += sample.value
    return total


def read_in_flight(url: str, timeout: float) -> float | None:
    """The in-flight count from the trainer's /metrics; None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return in_flight(response.read().decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_until_idle(url: str, *, max_wait_s: float, poll_s: float, idle_polls: int,
                    clock=time.monotonic, sleep=time.sleep) -> str:
    """Poll until idle; returns why it stopped waiting: idle, unreachable or timeout."""
    deadline = clock() + max_wait_s
    idle = 0
    while True:
        busy = read_in_flight(url, timeout=min(5.0, max(poll_s, 1.0)))
        if busy is None:
            return "unreachable"
        idle = idle + 1 if busy <= 0 else 0
        if idle >= idle_polls:
            return "idle"
        if clock() + poll_s > deadline:
            return "timeout"
        sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-wait-s", type=float, required=True,
                        help="give up waiting after this long (shorter than terminationGracePeriodSeconds)")
    parser.add_argument("--poll-s", type=float, default=2.0, help="seconds between two reads of /metrics")
    parser.add_argument("--idle-polls", type=int, default=2, help="idle reads in a row that count as idle")
    parser.add_argument("--port", type=int, default=0,
                        help="the trainer's health/metrics port (default: CTROPS_HTTP_PORT, else 8102)")
    args = parser.parse_args(argv)
    port = args.port or int(os.environ.get("CTROPS_HTTP_PORT") or 0) or DEFAULT_PORTS[SERVICE]
    started = time.monotonic()
    why = wait_until_idle(f"http://127.0.0.1:{port}/metrics", max_wait_s=args.max_wait_s,
                          poll_s=args.poll_s, idle_polls=max(1, args.idle_polls))
    # Kubernetes shows a hook's output only when the hook fails; the trainer's log has the rest.
    print(f"drain: {why} after {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

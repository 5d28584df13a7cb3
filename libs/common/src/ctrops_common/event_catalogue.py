"""Who produces and who consumes each topic: the routing half of the event catalogue.

``events.TOPIC_PAYLOADS`` fixes what travels on a topic; this table says between whom.
docs/events.md shows it as its "produced by" / "consumed by" columns
(tests/test_docs_catalogue.py checks they agree) and scripts/asyncapi.py turns it into the
send/receive operations of docs/asyncapi.yaml.

A party is a platform service (``service.PLATFORM_SERVICES``), ``every service`` (each of
them), ``every consumer`` (each service that consumes some topic: the dead letters come from
the consumer runtime) or a party outside the platform (operators, tests, benchmarks, the probe
service of ``python -m ctrops_common.probe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .events import Topic
from .service import PLATFORM_SERVICES

EVERY_SERVICE = "every service"
EVERY_CONSUMER = "every consumer"
PROBE_SERVICE = "probe service"
OUTSIDE_PARTIES = ("operators", "tests", "benchmarks")
PARTIES = (*PLATFORM_SERVICES, EVERY_SERVICE, EVERY_CONSUMER, PROBE_SERVICE, *OUTSIDE_PARTIES)


@dataclass(frozen=True)
class Route:
    """The parties that publish a topic and the ones that subscribe to it, in the order shown;
    ``notes`` adds words in brackets after a party (e.g. the trainer's cancel group)."""

    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        unknown = [p for p in (*self.producers, *self.consumers) if p not in PARTIES]
        if unknown:
            raise ValueError(f"unknown parties {unknown}; known: {PARTIES}")
        stray = set(self.notes) - set(self.producers) - set(self.consumers)
        if stray:
            raise ValueError(f"notes for parties not on the route: {sorted(stray)}")

    def cell(self, parties: tuple[str, ...]) -> str:
        """The parties as docs/events.md writes them: ``a, b (note)``."""
        return ", ".join(f"{p} ({self.notes[p]})" if p in self.notes else p for p in parties)


def _r(producers: str, consumers: str, **notes: str) -> Route:
    split = lambda text: tuple(p.strip() for p in text.split(",") if p.strip())  # noqa: E731
    return Route(split(producers), split(consumers), MappingProxyType(dict(notes)))


ROUTES: Mapping[Topic, Route] = MappingProxyType({
    Topic.UPLOAD_RECEIVED: _r("gateway", "ingest"),
    Topic.FILE_UPLOADED: _r("ingest", "gateway"),
    Topic.FILE_REJECTED: _r("ingest", "gateway"),
    Topic.TRAINING_REQUESTED: _r("gateway", "trainer, gateway, monitor"),
    Topic.TRAINING_STARTED: _r("trainer", "gateway, monitor"),
    Topic.TRAINING_PROGRESS: _r("trainer", "gateway, reporter, monitor"),
    Topic.TRAINING_DONE: _r("trainer", "gateway, explainer, reporter, monitor, scorer"),
    Topic.TRAINING_FAILED: _r("trainer", "gateway, monitor"),
    Topic.TRAINING_CANCEL_REQUESTED: _r(
        "gateway", "trainer", trainer="group `<trainer group>-cancel`, so it is read while training"),
    Topic.EXPLANATION_DONE: _r("explainer", "gateway, reporter, scorer, monitor"),
    Topic.EXPLANATION_FAILED: _r("explainer", "gateway, reporter"),
    Topic.REPORT_REQUESTED: _r("gateway", "reporter, monitor"),
    Topic.REPORT_READY: _r("reporter", "gateway, monitor"),
    Topic.REPORT_FAILED: _r("reporter", "gateway"),
    Topic.SCORING_REQUESTED: _r("gateway", "scorer, gateway"),
    Topic.SCORING_PROGRESS: _r("scorer", "gateway"),
    Topic.SCORING_DONE: _r("scorer", "gateway"),
    Topic.SCORING_FAILED: _r("scorer", "gateway"),
    Topic.MONITORING_PERIOD: _r("scorer", "monitor, gateway"),
    Topic.MONITOR_SNAPSHOT: _r("monitor", "gateway"),
    Topic.MONITOR_ALERT: _r("monitor", "gateway"),
    Topic.SERVICE_HEARTBEAT: _r(EVERY_SERVICE, "gateway, monitor"),
    Topic.SERVICE_ERROR: _r(EVERY_SERVICE, "gateway, monitor"),
    Topic.DEAD_LETTER: _r(EVERY_CONSUMER, "operators"),
    Topic.PROBE: _r("tests, benchmarks", PROBE_SERVICE),
    Topic.PROBE_REPLY: _r(PROBE_SERVICE, "tests, benchmarks"),
})


def consumers_of_some_topic() -> tuple[str, ...]:
    """The platform services that subscribe to at least one topic, in PLATFORM_SERVICES order."""
    return tuple(s for s in PLATFORM_SERVICES if any(s in r.consumers for r in ROUTES.values()))


def expand(parties: tuple[str, ...]) -> tuple[str, ...]:
    """The parties with ``every service`` / ``every consumer`` replaced by the services they
    stand for; duplicates dropped, order kept."""
    out: list[str] = []
    for party in parties:
        names = (PLATFORM_SERVICES if party == EVERY_SERVICE
                 else consumers_of_some_topic() if party == EVERY_CONSUMER else (party,))
        out.extend(n for n in names if n not in out)
    return tuple(out)

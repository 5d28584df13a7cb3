"""``python -m ctrops_common.probe``: a diagnostic service that answers ``bus.probe`` events.

Used by the bus tests (cross-process delivery, kill -9 redelivery, dead letters) and by
the round-trip benchmark. Its effect is idempotent on purpose: ``probes/<id>.json`` is
written atomically once, while ``probes/<id>.attempts`` logs every handling, so a test
can see a redelivery happen and the effect still happen once.
"""

from __future__ import annotations

import asyncio
import os

from .events import Event, Probe, ProbeReply, Topic
from .service import ServiceRuntime
from .settings import ServiceSettings, load_settings


def register(runtime: ServiceRuntime) -> None:
    async def on_probe(event: Event[Probe]) -> None:
        probe = event.payload
        store = runtime.store
        with open(store.path(f"probes/{probe.probe_id}.attempts"), "a") as log:
            log.write(f"{os.getpid()}\n")
        if probe.fail:
            raise RuntimeError(f"probe {probe.probe_id} asked to fail")
        if probe.hold_s:
            await asyncio.sleep(probe.hold_s)
        if not store.exists(f"probes/{probe.probe_id}.json"):
            store.write_json(f"probes/{probe.probe_id}.json", {"handled_by": os.getpid()})
        await runtime.bus.publish(
            Topic.PROBE_REPLY,
            ProbeReply(probe_id=probe.probe_id, sent_at=probe.sent_at, handled_by=runtime.instance),
            correlation_id=probe.probe_id,
        )

    runtime.store.path("probes").mkdir(parents=True, exist_ok=True)
    runtime.bus.subscribe(Topic.PROBE, on_probe)


def main() -> None:
    settings = load_settings(ServiceSettings)
    runtime = ServiceRuntime("probe", settings)
    register(runtime)
    runtime.run()


if __name__ == "__main__":
    main()

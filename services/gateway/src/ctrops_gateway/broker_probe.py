"""Broker reachability for /api/health, probed at most once per ``ttl_s``.

A TCP connect per health request would be one probe per request (500 a second under load, each
up to 0.3 s in a thread when the broker is gone). The answer is kept for ``ttl_s`` (1 s: the bus's
own watcher looks at the broker every second too), and requests arriving while a probe is under
way wait for that one instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ctrops_common.bus import bootstrap_reachable

TTL_S = 1.0


class BrokerProbe:
    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock  # a test passes its own, so the ttl does not race a loaded machine
        self.probes = 0  # TCP probes made so far (tests, and a sanity check under load)
        self._answers: dict[str, tuple[float, bool]] = {}  # bootstrap -> (when, reachable)
        self._pending: dict[str, asyncio.Task[bool]] = {}  # bootstrap -> the probe under way

    async def reachable(self, bootstrap: str) -> bool:
        """True when any bootstrap server accepts a TCP connection, as seen within the last ``ttl_s``."""
        answer = self._answers.get(bootstrap)
        if answer is not None and self._clock() - answer[0] < self.ttl_s:
            return answer[1]
        task = self._pending.get(bootstrap)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._probe(bootstrap))
            self._pending[bootstrap] = task
        # Shielded: a request that goes away does not cancel the probe the others wait for.
        return await asyncio.shield(task)

    async def _probe(self, bootstrap: str) -> bool:
        try:
            self.probes += 1
            ok = await asyncio.to_thread(bootstrap_reachable, bootstrap)
            self._answers[bootstrap] = (self._clock(), ok)
            return ok
        finally:
            self._pending.pop(bootstrap, None)

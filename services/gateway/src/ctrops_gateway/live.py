"""WebSocket fan-out fed by the bus, and waiting for a reply event.

``Hub``: every WebSocket client of a channel (``training:<run_id>``, ``performance``)
gets its own bounded queue, so one slow client never holds up the others; a client
whose queue overflows is dropped (it reconnects and gets the history again).

``Replies``: a request that must answer with another service's result (an upload
waiting for ingest's verdict, a PDF waiting for the reporter) waits on a future keyed
by its id; the consumer resolves it when the matching event arrives.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any


class Hub:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._channels: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)

    def subscribe(self, channel: str) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self.queue_size)
        self._channels[channel].add(queue)
        return queue

    def unsubscribe(self, channel: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._channels[channel]

    def publish(self, channel: str, message: dict[str, Any]) -> int:
        delivered = 0
        for queue in list(self._channels.get(channel, ())):
            try:
                queue.put_nowait(message)
                delivered += 1
            except asyncio.QueueFull:
                self.unsubscribe(channel, queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # None tells the socket to close
        return delivered

    def clients(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))


class Replies:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Any]] = {}

    def expect(self, key: str) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        return future

    def resolve(self, key: str, value: Any) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)

    def forget(self, key: str) -> None:
        self._waiting.pop(key, None)

    async def wait(self, key: str, future: asyncio.Future[Any], timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self.forget(key)

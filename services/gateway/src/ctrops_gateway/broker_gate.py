"""The broker is down: answer 503 with Retry-After on every route that needs it, never 500 or a hang.

``Bus.publish`` raises ``BrokerUnavailable`` (at once while its watcher sees the broker down,
or after its publish timeout); routes that then wait for a worker's answer stop waiting
as soon as the broker goes away. One exception handler turns both into the same 503.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ctrops_common.bus import BrokerUnavailable

from .live import Replies

POLL_S = 0.5


def require_broker(bus: Any) -> None:
    """Refuse before doing any work (receiving an upload's body, say) while the broker is down."""
    if not bus.broker_up:
        raise BrokerUnavailable(f"the message broker ({bus.settings.kafka_bootstrap_servers}) is unreachable")


async def wait_reply(bus: Any, replies: Replies, key: str, future: asyncio.Future[Any], timeout_s: float) -> Any:
    """``replies.wait`` that gives up with ``BrokerUnavailable`` when the broker goes down meanwhile:
    the answer it waits for can no longer arrive (raises asyncio.TimeoutError at the timeout as before)."""
    waiting = asyncio.ensure_future(replies.wait(key, future, timeout_s))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=POLL_S)
            if done:
                return waiting.result()
            if not bus.broker_up:
                raise BrokerUnavailable("the message broker went down before the answer came back")
    finally:
        if not waiting.done():
            waiting.cancel()
            replies.forget(key)


def unavailable_response(exc: BrokerUnavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": f"The message broker is unavailable ({exc}); the platform cannot take this request now. "
                   f"Try again in {exc.retry_after_s} s (GET /api/health shows when the broker is back).",
         "unavailable": "broker"},
        status_code=503,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(BrokerUnavailable)
    async def broker_unavailable(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return unavailable_response(exc)

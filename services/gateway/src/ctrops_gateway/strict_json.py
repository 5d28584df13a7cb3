"""JSON request bodies may carry only finite numbers.

Python's ``json`` module (which Starlette and FastAPI use) accepts ``NaN``, ``Infinity`` and
``-Infinity`` and turns a literal like ``1e999`` into ``inf``. Neither is JSON (RFC 8259), a
config value that is not finite can never be right, and pydantic would echo it back in the
422 body, which cannot be encoded as JSON (the request answered 500 before this). So every
JSON body is checked once, before the route runs, and a non-finite number is refused with
422 naming where it is (``config.learningRate``). Bodies that are not valid JSON pass
through untouched: FastAPI answers them itself. The body is already capped by the limits
middleware outside this one (``CTROPS_MAX_JSON_BODY_KB``, and 408 for a body that stalls),
so buffering it again here is bounded.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .caller import method_of, route_of

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _NonFinite:
    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


# What a non-finite number needs in the text: a NaN/Infinity literal, or an overflowing float,
# which has an exponent of at least three digits or at least 309 digits in a row. A body with
# none of these (nearly every body) cannot hold one, and skips the parse with a Python hook per
# float, which cost 43% of the gateway's time on 100-row prediction requests (bench/scoring.py).
_MAYBE_NON_FINITE = re.compile(rb"NaN|Infinity|[eE][+-]?\d{3}|\d{309}")


def non_finite_paths(body: bytes) -> list[tuple[list[str | int], str]]:
    """(path, literal) of every non-finite number in a JSON body; [] when none or not JSON."""
    if _MAYBE_NON_FINITE.search(body) is None:
        return []
    try:
        document = json.loads(body, parse_constant=_NonFinite, parse_float=_parse_float)
    except ValueError:  # not JSON (or an integer too long to parse): FastAPI answers it
        return []
    found: list[tuple[list[str | int], str]] = []

    def walk(value: Any, path: list[str | int]) -> None:
        if isinstance(value, _NonFinite):
            found.append((path, value.literal))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*path, key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, [*path, index])

    walk(document, [])
    return found


def _is_json(headers: Headers) -> bool:
    content_type = headers.get("content-type", "")
    # FastAPI parses a body without a content type as JSON too.
    return not content_type or "json" in content_type.split(";", 1)[0].lower()


class StrictJsonMiddleware:
    def __init__(self, app: ASGIApp, skip: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.skip = skip  # (method, route template) whose bodies are not JSON (the streaming upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or method_of(scope) not in BODY_METHODS or not _is_json(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        template, _ = route_of(scope)
        if (method_of(scope), template or "") in self.skip:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problems = non_finite_paths(body) if body else []
        if problems:
            await _refuse(send, problems)
            return
        await self.app(scope, _replay([body], None, receive), send)


def _replay(bodies: list[bytes], first: Message | None, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": b, "more_body": False} for b in bodies]
    if first is not None:
        pending.append(first)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _refuse(send: Send, problems: list[tuple[list[str | int], str]]) -> None:
    details = []
    errors = []
    for path, literal in problems[:20]:
        where = ".".join(str(p) for p in path) or "body"
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        why = ("JSON has no NaN or Infinity" if literal in ("NaN", "Infinity", "-Infinity")
               else "it is too large for a 64-bit float")
        message = f"must be a finite number; {shown} is not allowed ({why})"
        details.append(f"{where}: {message}")
        errors.append({"loc": ["body", *path], "msg": message, "type": "finite_number"})
    await _send(send, 422, {"detail": "; ".join(details), "errors": errors})


async def _send(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

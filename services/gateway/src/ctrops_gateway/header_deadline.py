"""A deadline for a request's headers (issue 17, header slowloris): uvicorn 0.54 has none.

uvicorn reads request headers for as long as the client takes: a client that opens a connection
and sends nothing, or sends its request line and headers a byte at a time, holds a socket (and
the parser's buffer) forever, and enough of them take the gateway down. The body is covered
elsewhere (``CTROPS_REQUEST_BODY_TIMEOUT_S`` and ``CTROPS_REQUEST_BODY_MIN_RATE_BPS``, limits.py and
the upload route), but those only start once the headers are complete and the app runs.

``header_deadline_protocol(timeout_s)`` is uvicorn's httptools HTTP/1.1 protocol (the one
``http="auto"`` picks with ``uvicorn[standard]``, so the parser is unchanged) with one timer:

- armed when a connection is made: a fresh connection must complete its first request's
  headers within ``timeout_s`` of connecting, sending nothing at all included;
- armed when a keep-alive connection begins its next request (its first byte): the idle time
  between requests stays ``timeout_keep_alive``'s (uvicorn closes an idle keep-alive connection
  after it), the header deadline counts from the request's first byte; a pipelined request whose
  predecessor is still being answered gets its deadline from when that answer is complete;
- cancelled once the request's headers are complete (the body has its own limits; a WebSocket
  upgrade is past this point too), and when the connection is lost.

When it fires the connection is closed: with a 408 (JSON ``detail``, ``Connection: close``) when
part of a request had arrived, without a word when nothing had. It is logged without the request
line or headers (which may carry a token): the peer address and the timeout, at WARNING, at
most one line per ``LOG_EVERY_S`` per process, each saying how many connections were cut since the
line before, so an attack of thousands of connections does not flood the log.

Why httptools and not h11: the gateway ran on httptools (``auto``) before this, and its C parser
reports the two moments the deadline needs as callbacks (``on_message_begin``,
``on_headers_complete``); switching the parser to h11 would change more than this limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

SETTING = "CTROPS_REQUEST_HEADER_TIMEOUT_S"
LOG_EVERY_S = 10.0
LINGER_S = 2.0  # after a 408: how long the rest of the client's request is read and dropped


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-header deadline (``header_timeout_s``)."""

    header_timeout_s: ClassVar[float] = 10.0
    _last_log: ClassVar[float] = -float("inf")  # process-wide log throttle (one event loop)
    _unlogged: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False  # a request is under way whose headers are not complete
        self._request_started = False  # ... and at least its first byte arrived
        self._lingering = False  # answered 408: reading and dropping until the socket closes

    # -- the timer --------------------------------------------------------------------------------------------

    def _arm_header_deadline(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _answering(self) -> bool:
        """A request on this connection is still being answered (pipelining)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers or self._answering():
            return  # on_response_complete arms it again for a pipelined request
        self._log_cut()
        if self._request_started:
            self._send_408()
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Close after the 408 without a reset: a client still sending its headers would otherwise get a
        TCP RST for its next byte, which can discard the 408 before it reads it. Our side is shut for
        writing (the client reads the 408, then end of file), what it still sends is dropped, and the
        socket is closed ``LINGER_S`` later (nginx's lingering close)."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a request already answered with 408
        super().data_received(data)

    def _send_408(self) -> None:
        body = json.dumps({"detail": f"The request headers were not complete within {self.header_timeout_s:g} s "
                                     f"({SETTING})"}).encode()
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n", b"\r\n", body])
        self.transport.write(b"".join(content))

    def _log_cut(self) -> None:
        cls = HeaderDeadlineProtocol
        now = time.monotonic()
        if now - cls._last_log < LOG_EVERY_S:
            cls._unlogged += 1
            return
        peer = "%s:%d" % self.client if self.client else "unknown peer"
        what = "sent part of a request" if self._request_started else "sent nothing"
        others = f"; {cls._unlogged} more connection(s) cut the same way since the last line" if cls._unlogged else ""
        log.warning("Closed a connection from %s that %s and did not complete its request headers within "
                    "%g s (%s)%s", peer, what, self.header_timeout_s, SETTING, others)
        cls._last_log, cls._unlogged = now, 0

    # -- uvicorn's hooks --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._awaiting_headers = True
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = self._request_started = True
        if not self._answering():  # else on_response_complete arms it
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = self._request_started = False
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request whose headers are complete
        if self._awaiting_headers and not self._answering() and not self.transport.is_closing():
            self._arm_header_deadline()


def header_deadline_protocol(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to pass as ``uvicorn.run(..., http=...)``, with this header deadline."""
    if not timeout_s > 0:
        raise ValueError(f"{SETTING} must be greater than 0, got {timeout_s!r}")
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": float(timeout_s)})

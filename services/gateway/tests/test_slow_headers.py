"""Header slowloris (issue 17): request headers that never complete are cut at
CTROPS_REQUEST_HEADER_TIMEOUT_S (header_deadline.py), on a real gateway process (uvicorn with the
gateway's protocol), while complete requests, keep-alive and slow bodies are left alone.

Timing assertions are bounds, never equalities: lower bounds hold however loaded the machine is
(load only makes the server later), upper bounds are generous."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from ctrops_common.events import new_id

SETTING = "CTROPS_REQUEST_HEADER_TIMEOUT_S"


def _read_until_closed(sock: socket.socket, timeout_s: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not within ``timeout_s``)."""
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-cased headers, body by Content-Length) read off a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _warnings(gateway) -> list[str]:
    return [line for line in gateway.log().splitlines() if SETTING in line and "Closed a connection" in line]


def _wait_for(condition, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return result


def test_headers_sent_a_byte_at_a_time_are_cut_with_408_at_the_header_timeout(start_service):
    gateway = start_service("gateway", {SETTING: "1"})
    # 2 bytes a second: these headers would take a minute to arrive.
    request = b"GET /api/health HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"slowloris-" * 10 + b"\r\n\r\n"
    stop = threading.Event()
    sent = []

    def drip(sock: socket.socket) -> None:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            sent.append(byte)
            if stop.wait(0.5):
                return

    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    started = time.monotonic()
    dripping = threading.Thread(target=drip, args=(sock,), daemon=True)
    dripping.start()
    try:
        data = _read_until_closed(sock)
        took = time.monotonic() - started
    finally:
        stop.set()
        dripping.join(5)
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in head.lower()
    assert SETTING.encode() in body and b"not complete within 1 s" in body, body
    assert 0.9 <= took < 15, took  # at the deadline, long before the headers could have ended (~60 s)
    assert 0 < len(sent) < len(request) // 2, len(sent)

    # A connection that sends nothing at all is closed too, without an answer.
    idle = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    started = time.monotonic()
    try:
        assert _read_until_closed(idle) == b""
        took = time.monotonic() - started
    finally:
        idle.close()
    assert 0.9 <= took < 15, took

    # Logged, with the peer and the setting, never the request (which may carry a token).
    lines = _wait_for(lambda: _warnings(gateway))
    assert "sent part of a request" in lines[0] and "127.0.0.1:" in lines[0], lines
    assert not any("slowloris" in line or "/api/health" in line for line in lines), lines

    # The gateway serves normally afterwards.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("GET", "/api/health")
    assert connection.getresponse().status == 200
    connection.close()


def test_keep_alive_requests_and_slow_bodies_are_not_cut_by_the_header_timeout(start_service):
    gateway = start_service("gateway", {SETTING: "1"})
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    try:
        health = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(health)
        status, headers, _ = _response(sock)
        assert status == 200 and headers.get("connection") != "close"
        # Idle between requests longer than the header timeout, shorter than uvicorn's keep-alive (5 s):
        # the header deadline only counts from the next request's first byte.
        time.sleep(2)
        sock.sendall(health)
        assert _response(sock)[0] == 200
        # Headers complete, body late (past the header timeout, inside CTROPS_REQUEST_BODY_TIMEOUT_S):
        # the request is answered by the route (unknown file), not cut with 408.
        body = b'{"file_id": "%s"}' % new_id().encode()
        sock.sendall(b"POST /api/train HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        time.sleep(2)
        sock.sendall(body)
        status, _, answer = _response(sock)
        assert status == 404, (status, answer)
        # Idle after that, the connection is closed by uvicorn's keep-alive timeout (5 s), not at 1 s.
        started = time.monotonic()
        assert _read_until_closed(sock) == b""
        took = time.monotonic() - started
        assert 4 <= took < 30, took
    finally:
        sock.close()
    assert not _warnings(gateway), _warnings(gateway)


def test_two_hundred_stalled_headers_leave_the_gateway_healthy_and_are_all_closed(start_service):
    timeout_s = 8  # long enough to show /api/health answering while all of them are open
    gateway = start_service("gateway", {SETTING: str(timeout_s)})
    partial = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: "
    stalled = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
            sock.sendall(partial)
            stalled.append(sock)
        opened = time.monotonic()

        # /api/health answers while they are open ...
        for _ in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
            connection.request("GET", "/api/health")
            assert connection.getresponse().status == 200
            connection.close()
        # ... and they were still open then: nothing to read, no end of stream.
        for sock in stalled:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)

        # After the timeout the server has closed every one of them, each with a 408.
        answers = [_read_until_closed(sock, timeout_s=60) for sock in stalled]
        took = time.monotonic() - opened
    finally:
        for sock in stalled:
            sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}
    assert timeout_s - 2 <= took < 60, took

    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("GET", "/api/health")
    assert connection.getresponse().status == 200
    connection.close()
    # Logged without flooding: one line per 10 s, carrying the count of the others.
    lines = _wait_for(lambda: _warnings(gateway))
    assert len(lines) <= 5, lines

"""The supervisor's readiness probe (``make run`` and the tests' service processes use it)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ctrops_common.broker import free_port
from ctrops_common.stack import is_ready


def test_a_service_answering_200_on_readyz_is_ready():
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200 if self.path == "/readyz" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert is_ready(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_is_not_ready():
    assert not is_ready(free_port())


def test_a_port_that_reads_back_the_request_is_not_ready_and_no_crash():
    # What a TCP self-connect looks like to the client: its own "GET /readyz HTTP/1.1" comes
    # back as the status line (seen in a test run: make run died with BadStatusLine).
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(65536))

    threading.Thread(target=echo, daemon=True).start()
    try:
        assert not is_ready(listener.getsockname()[1])
    finally:
        listener.close()


def test_each_worker_gets_its_default_health_port_under_make_run():
    """make run numbers the workers' health ports from CTROPS_SERVICE_PORT_BASE in SERVICES order;
    with the default base that is each service's DEFAULT_PORTS entry (what compose and Kubernetes use)."""
    from ctrops_common.service import DEFAULT_PORTS
    from ctrops_common.stack import COLORS, SERVICES, StackSettings

    settings = StackSettings()
    assert set(SERVICES) == set(DEFAULT_PORTS) and set(SERVICES) <= set(COLORS)
    for name in SERVICES:
        if name != "gateway":
            assert settings.service_port_base + SERVICES.index(name) == DEFAULT_PORTS[name], name
    assert settings.gateway_port == DEFAULT_PORTS["gateway"]


def test_the_gateway_is_told_where_the_scorer_api_listens(tmp_path, monkeypatch):
    from ctrops_common.stack import Stack, StackSettings

    for name in ("CTROPS_SCORER_URL", "CTROPS_SCORER_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CTROPS_DATA_DIR", str(tmp_path))
    env = Stack(StackSettings(), ["scorer", "gateway"], use_embedded_broker=False).env()
    assert env["CTROPS_SCORER_API_PORT"] == "8090" and env["CTROPS_SCORER_URL"] == "http://127.0.0.1:8090"
    monkeypatch.setenv("CTROPS_SCORER_API_PORT", "18090")
    env = Stack(StackSettings(), ["scorer", "gateway"], use_embedded_broker=False).env()
    assert env["CTROPS_SCORER_API_PORT"] == "18090" and env["CTROPS_SCORER_URL"] == "http://127.0.0.1:18090"
    monkeypatch.setenv("CTROPS_SCORER_URL", "http://scorer.example:9000")  # an explicit URL wins
    assert Stack(StackSettings(), ["gateway"], use_embedded_broker=False).env()["CTROPS_SCORER_URL"] == (
        "http://scorer.example:9000")

"""Request metrics (ctrops_gateway.measure, a plain ASGI step) and /api/health's broker probe (at most
one TCP connect per second, however many requests ask)."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from ctrops_gateway.broker_probe import BrokerProbe
from ctrops_gateway.measure import Measure


def _count(method: str, route: str, status: str) -> float:
    return REGISTRY.get_sample_value("ctrops_http_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0.0


def _timed(method: str, route: str) -> float:
    return REGISTRY.get_sample_value("ctrops_http_request_seconds_count", {"method": method, "route": route}) or 0.0


class _Traffic:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def observe(self, route: str, seconds: float, *, failed: bool) -> None:
        assert seconds >= 0
        self.seen.append((route, failed))


def _app() -> tuple[Starlette, _Traffic]:
    async def item(request):
        return JSONResponse({"id": request.path_params["item_id"]}, status_code=201)

    async def boom(request):
        raise RuntimeError("the handler failed")

    async def stream(request):
        async def chunks():
            for i in range(3):
                yield f"part{i};".encode()
        return StreamingResponse(chunks(), media_type="text/plain")

    async def healthz(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/measure-test/items/{item_id}", item), Route("/measure-test/boom", boom),
                            Route("/measure-test/stream", stream), Route("/healthz", healthz)])
    app.add_middleware(Measure)
    traffic = _Traffic()
    app.state.gateway = SimpleNamespace(traffic=traffic)
    return app, traffic


async def _get(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


def test_requests_are_counted_by_route_template_and_status_and_fed_to_traffic():
    app, traffic = _app()
    before = _count("GET", "/measure-test/items/{item_id}", "201"), _timed("GET", "/measure-test/items/{item_id}")
    unmatched = _count("GET", "unmatched", "404")
    for i in range(3):
        response = asyncio.run(_get(app, f"/measure-test/items/{i}"))
        assert response.status_code == 201 and response.json() == {"id": str(i)}
    assert asyncio.run(_get(app, "/measure-test/nowhere")).status_code == 404
    assert _count("GET", "/measure-test/items/{item_id}", "201") == before[0] + 3
    assert _timed("GET", "/measure-test/items/{item_id}") == before[1] + 3
    assert _count("GET", "unmatched", "404") == unmatched + 1
    assert traffic.seen == [("/measure-test/items/{item_id}", False)] * 3 + [("unmatched", False)]


def test_an_app_that_raised_is_counted_as_500_and_the_error_goes_on():
    app, traffic = _app()
    before = _count("GET", "/measure-test/boom", "500")
    response = asyncio.run(_get(app, "/measure-test/boom"))
    assert response.status_code == 500  # Starlette's error handler still answers
    assert _count("GET", "/measure-test/boom", "500") == before + 1
    assert traffic.seen == [("/measure-test/boom", True)]

    async def raw() -> None:  # the exception itself still reaches the server
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        inner = Measure(_raises)
        with pytest.raises(RuntimeError, match="inner"):
            await inner({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send)
        assert sent == []

    async def _raises(scope, receive, send):
        raise RuntimeError("inner")

    before_post = _count("POST", "unmatched", "500")
    asyncio.run(raw())
    assert _count("POST", "unmatched", "500") == before_post + 1


def test_streaming_bodies_pass_through_whole_and_probes_are_not_traffic():
    app, traffic = _app()
    assert asyncio.run(_get(app, "/measure-test/stream")).text == "part0;part1;part2;"
    before = _count("GET", "/healthz", "200")
    assert asyncio.run(_get(app, "/healthz")).text == "ok"
    assert _count("GET", "/healthz", "200") == before + 1  # counted in Prometheus...
    assert traffic.seen == [("/measure-test/stream", False)]  # ...but not the API's traffic


def test_the_gateway_labels_a_batch_upload_by_the_route_it_was_dispatched_to(gateway_client):
    """PredictDispatch stays outermost: the metrics see the batch route a multipart POST was sent to."""
    route = "/api/predict/{run_id}/batch"
    before = sum(_count("POST", route, s) for s in ("200", "202", "400", "404", "409", "413", "422", "503"))
    unmatched = _count("POST", "unmatched", "404")
    response = gateway_client.post("/api/predict/0123456789abcdef0123456789abcdef",
                                   files={"file": ("rows.csv", b"a,b\n1,2\n", "text/csv")})
    assert response.status_code < 500, response.text
    after = sum(_count("POST", route, s) for s in ("200", "202", "400", "404", "409", "413", "422", "503"))
    assert after == before + 1, response.status_code
    assert _count("POST", "unmatched", "404") == unmatched


def test_the_broker_probe_connects_at_most_once_per_ttl_however_many_ask():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    bootstrap = f"127.0.0.1:{listener.getsockname()[1]}"
    now = [1000.0]  # the probe's clock, moved by hand: a loaded machine cannot outrun the ttl
    probe = BrokerProbe(ttl_s=0.5, clock=lambda: now[0])

    async def burst() -> list[bool]:
        return await asyncio.gather(*(probe.reachable(bootstrap) for _ in range(300)))

    async def scenario() -> None:
        assert all(await burst())
        assert probe.probes == 1  # 300 concurrent requests, one connect
        now[0] += 0.4
        assert all(await burst()) and probe.probes == 1  # within the ttl: the kept answer
        listener.close()
        assert all(await burst())  # still the answer of the last 0.5 s
        assert probe.probes == 1
        now[0] += 0.2  # 0.6 s after the probe: the kept answer has expired
        assert not any(await burst())
        assert probe.probes == 2

    try:
        asyncio.run(scenario())
    finally:
        listener.close()


def test_a_request_that_goes_away_does_not_cancel_the_probe_others_wait_for():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    bootstrap = f"127.0.0.1:{listener.getsockname()[1]}"
    probe = BrokerProbe(ttl_s=5)

    async def scenario() -> None:
        first = asyncio.create_task(probe.reachable(bootstrap))
        await asyncio.sleep(0)
        second = asyncio.create_task(probe.reachable(bootstrap))
        await asyncio.sleep(0)
        first.cancel()
        assert await second is True
        assert probe.probes == 1

    try:
        asyncio.run(scenario())
    finally:
        listener.close()

"""Hostile or broken input gets a 4xx that names what to fix, never a 500 (issue 17, items 5 and 6):
non-finite numbers in JSON, booleans as numbers, unsafe experiment names, configs too big for
the trainer's memory; through the real routes (the app in-process on the in-memory bus for the
answers themselves, a real uvicorn process where the connection itself matters, and a real ingest
on the real broker for the awkward CSV files)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time

import pytest

from ctrops_common.dataset import profile_path
from ctrops_common.documents import Profile, read_document
from ctrops_common.events import TrainingConfig, new_id
from ctrops_common.storage import FileStore
from ctrops_gateway.strict_json import non_finite_paths
from ctrops_gateway.training_cost import estimate, too_big

SMALL = {"batchSize": 512, "maxSeqLen": 16, "lstmHidden": 8, "mlpHidden": "16"}


def post_raw(client, path: str, raw: str):
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


# -- non-finite numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "where", "literal"), [
    ('{"file_id": "%s", "config": {"learningRate": NaN}}', "config.learningRate", "NaN"),
    ('{"file_id": "%s", "config": {"dropout": Infinity}}', "config.dropout", "Infinity"),
    ('{"file_id": "%s", "config": {"validation_split": -Infinity}}', "config.validation_split", "-Infinity"),
    ('{"file_id": "%s", "config": {"learning_rate": 1e999}}', "config.learning_rate", "1e999"),
    ('{"file_id": "%s", "config": {"mlpHidden": [16, NaN]}}', "config.mlpHidden.1", "NaN"),
])
@pytest.mark.inmemory
def test_non_finite_numbers_in_json_are_422_naming_the_field_and_the_next_request_is_served(
        memory_gateway, raw, where, literal):
    gateway_client = memory_gateway.client
    response = post_raw(gateway_client, "/api/train", raw % new_id())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"].startswith(f"{where}: must be a finite number") and literal in body["detail"]
    assert body["errors"][0]["loc"][0] == "body"
    # The same client goes on: the next request is answered normally.
    assert gateway_client.get("/api/health").status_code == 200
    assert post_raw(gateway_client, "/api/train", '{"file_id": "%s", "config": {"learningRate": 0.01}}'
                    % new_id()).status_code == 404  # valid config, unknown file


@pytest.mark.inmemory
def test_huge_but_finite_numbers_are_ordinary_range_errors(memory_gateway):
    gateway_client = memory_gateway.client
    response = post_raw(gateway_client, "/api/train", '{"file_id": "%s", "config": {"learningRate": 1e308}}' % new_id())
    assert response.status_code == 422 and "config.learningRate" in response.json()["detail"]
    response = post_raw(gateway_client, "/api/train", '{"file_id": "%s", "config": {"epochs": 1e308}}' % new_id())
    assert response.status_code == 422 and "config.epochs" in response.json()["detail"]


def test_non_finite_paths_finds_every_one_and_ignores_what_is_not_json():
    assert non_finite_paths(b'{"a": [1, {"b": NaN}], "c": Infinity, "d": 1e308}') == [(["a", 1, "b"], "NaN"),
                                                                                         (["c"], "Infinity")]
    assert non_finite_paths(b"{not json") == []
    assert non_finite_paths(b'{"x": 1.5}') == []
    # Overflow without a NaN/Infinity literal: a 3-digit exponent, or 309+ digits in a row.
    assert non_finite_paths(b'{"x": 1e999, "y": -2E+400}') == [(["x"], "1e999"), (["y"], "-2E+400")]
    assert non_finite_paths(b'{"x": %s.0}' % (b"9" * 400)) == [(["x"], "9" * 400 + ".0")]
    # The fast path: bodies that cannot hold one are not parsed, and the text "NaN" inside a
    # string is no number.
    assert non_finite_paths(b'{"rows": [{"hour": 1.5e3, "seq": "1,2,3"}]}') == []
    assert non_finite_paths(b'{"note": "NaN", "x": 2}') == []


def test_a_non_finite_body_does_not_break_the_keep_alive_connection_of_a_real_server(start_service):
    gateway = start_service("gateway")
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        body = '{"file_id": "%s", "config": {"learningRate": NaN}}' % new_id()
        connection.request("POST", "/api/train", body=body, headers={"content-type": "application/json"})
        first = connection.getresponse()
        assert first.status == 422
        assert "config.learningRate" in json.loads(first.read())["detail"]
        connection.request("GET", "/api/health")  # the same connection
        second = connection.getresponse()
        assert second.status == 200
        second.read()
    finally:
        connection.close()


# -- strict types and names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "where"), [
    ({"epochs": True}, "config.epochs"),
    ({"batch_size": False}, "config.batch_size"),
    ({"batchSize": True}, "config.batchSize"),
    ({"learningRate": True}, "config.learningRate"),
    ({"early_stopping_patience": True}, "config.early_stopping_patience"),
    ({"mlpHidden": [True]}, "config.mlpHidden"),
])
@pytest.mark.inmemory
def test_booleans_are_not_numbers(memory_gateway, config, where):
    gateway_client = memory_gateway.client
    response = gateway_client.post("/api/train", json={"file_id": new_id(), "config": config})
    assert response.status_code == 422, response.text
    assert where in response.json()["detail"]


@pytest.mark.parametrize("name", ["bad\x00name", "line\nbreak", "tab\there", "../../etc", "a/b", "a\\b", "..",
                                  "x\u2028y"])
@pytest.mark.inmemory
def test_unsafe_experiment_names_are_422_naming_the_field(memory_gateway, name):
    gateway_client = memory_gateway.client
    for key in ("experimentName", "experiment_name"):
        response = gateway_client.post("/api/train", json={"file_id": new_id(), "config": {key: name}})
        assert response.status_code == 422, (name, response.text)
        assert f"config.{key}" in response.json()["detail"]


def test_ordinary_experiment_names_and_both_spellings_still_pass():
    for name in ("gateway-test", "CTR_Experiment_20260101", "실험 1.2 (봄 캠페인)", "v2.1_final"):
        assert TrainingConfig.model_validate({"experimentName": name}).experiment_name == name
    config = TrainingConfig.model_validate({"epochs": 3, "batch_size": 1024, "lstmHidden": 16})
    assert (config.epochs, config.batch_size, config.lstm_hidden) == (3, 1024, 16)


# -- memory cost -------------------------------------------------------------------------------------------------


@pytest.mark.inmemory
def test_the_largest_allowed_config_is_refused_before_training_naming_the_fields_the_estimate_and_the_limit(
        memory_gateway):
    gateway_client = memory_gateway.client
    largest = {"batchSize": 65536, "maxSeqLen": 4096, "lstmHidden": 1024, "mlpHidden": [4096] * 8, "epochs": 200}
    response = gateway_client.post("/api/train", json={"file_id": new_id(), "config": largest})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    for part in ("batchSize 65536", "maxSeqLen 4096", "lstmHidden 1024", "mlpHidden", "4,096 MB",
                 "CTROPS_TRAINING_MEMORY_LIMIT_MB", "estimated"):
        assert part in detail, (part, detail)
    # one field alone can be too much as well
    response = gateway_client.post("/api/train", json={"file_id": new_id(), "config": {"batchSize": 65536}})
    assert response.status_code == 422 and "batchSize 65536" in response.json()["detail"]


def test_the_default_and_the_test_configs_fit_and_the_limit_is_a_setting():
    assert too_big(TrainingConfig(), 4096) is None
    assert estimate(TrainingConfig()).total_mb < 2048
    assert too_big(TrainingConfig.model_validate(SMALL), 64) is None
    assert too_big(TrainingConfig(), 512) is not None


# -- awkward CSV uploads, through the gateway to a real ingest -------------------------------------------------


def _rows(n: int = 40) -> list[str]:
    return [f"{i % 24},{1000 + i},\"1,2,{i}\",{int(i % 7 == 0)}" for i in range(n)]


def _upload(client, content: bytes, name: str = "ads.csv"):
    return client.post("/api/upload", files={"file": (name, content, "text/csv")})


def _strict_json(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{constant} in the answer")

    return json.loads(text, parse_constant=refuse)


def test_awkward_csvs_are_read_or_answered_by_name_never_500(unlimited_uploads, start_service, gateway_client,
                                                             data_dir):
    start_service("ingest")
    header = "hour,l_feat_1,seq,clicked"

    # CR-only line endings (old Mac, some exports) are line ends, like LF and CRLF.
    response = _upload(gateway_client, "\r".join([header, *_rows()]).encode() + b"\r")
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 40 and response.json()["validation"]["isValid"] is True

    # A seq over Python csv's default field limit (131,072 characters) in the first data row.
    long_seq = ",".join(str(i % 997) for i in range(40_000))
    assert len(long_seq) > 131_072
    rows = _rows()
    rows[0] = f"1,1000,\"{long_seq}\",1"
    response = _upload(gateway_client, "\n".join([header, *rows, ""]).encode())
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 40 and response.json()["validation"]["isValid"] is True

    # Finite but huge numbers: accepted, statistics stay finite JSON, and a warning names the column and rows.
    rows = [f"{i % 24},{'1e308' if i % 2 else '-1.7e308'},\"1,2,{i}\",{int(i % 7 == 0)}" for i in range(40)]
    response = _upload(gateway_client, "\n".join([header, *rows, ""]).encode())
    assert response.status_code == 200, response.text
    body = _strict_json(response.text)
    assert body["validation"]["isValid"] is True
    warning = next(w for w in body["validation"]["warnings"] if w.startswith("l_feat_1:"))
    assert "40 values are larger than" in warning and "data row 1" in warning and "missing" in warning
    # Read as the Profile document, which refuses NaN and infinity: the statistics are finite JSON.
    profile = read_document(FileStore(data_dir), profile_path(body["file_id"]), Profile)
    stats = profile.columns["l_feat_1"]
    assert stats.max == 1e308 and stats.min == -1.7e308 and -1.7e308 < stats.mean < 1e308


# -- stalled bodies and concurrent uploads, on a real uvicorn process -------------------------------------------


def _stalled(port: int, path: str, head: bytes, declared: int, content_type: str) -> socket.socket:
    """A request that declares ``declared`` body bytes, sends ``head`` of them and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + head)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body.decode()


def test_stalled_bodies_are_cut_at_the_timeout_leave_nothing_and_uploads_are_bounded(start_service, data_dir):
    gateway = start_service("gateway", {"CTROPS_REQUEST_BODY_TIMEOUT_S": "2", "CTROPS_MAX_CONCURRENT_UPLOADS": "3",
                                        "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": "0"})
    boundary = "stall"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\nhour,seq,clicked\n1,\"1,2\",0\n").encode()
    multipart = f"multipart/form-data; boundary={boundary}"
    started = time.monotonic()
    stalled = [_stalled(gateway.port, "/api/upload", head, 100_000, multipart) for _ in range(3)]
    uploads = data_dir / "uploads"
    holding = time.monotonic() + 10
    while not uploads.exists() or len(list(uploads.iterdir())) < 3:  # the three are in: each has its upload folder
        assert time.monotonic() < holding, list(uploads.rglob("*")) if uploads.exists() else "no uploads folder"
        time.sleep(0.05)
    extra = _stalled(gateway.port, "/api/upload", head, 100_000, multipart)
    status, headers, body = _answer(extra)
    assert status == 503 and headers.get("retry-after") == "5", (status, body)
    assert "CTROPS_MAX_CONCURRENT_UPLOADS" in json.loads(body)["detail"]
    json_stall = _stalled(gateway.port, "/api/train", b'{"file_id": "', 200, "application/json")
    for sock in stalled:
        status, headers, body = _answer(sock)
        assert status == 408, body
        assert "CTROPS_REQUEST_BODY_TIMEOUT_S" in json.loads(body)["detail"]
        assert headers.get("connection") == "close"
    status, _, body = _answer(json_stall)
    assert status == 408 and "stalled" in json.loads(body)["detail"]
    assert time.monotonic() - started < 15
    for sock in [*stalled, extra, json_stall]:
        sock.close()
    # Nothing of the cut uploads is left: no partial file, no empty folder.
    assert not uploads.exists() or not any(uploads.iterdir()), list(uploads.rglob("*"))
    # The slots are free again and the gateway is healthy.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("GET", "/api/health")
    assert connection.getresponse().status == 200
    connection.close()


def test_bodies_that_trickle_are_cut_at_the_minimum_rate_and_leave_nothing(start_service, data_dir):
    """Slowloris on the body: a few bytes every half second never stalls, yet it is cut once the body
    averages less than CTROPS_REQUEST_BODY_MIN_RATE_BPS (500 B/s) past the stall timeout."""
    import threading

    gateway = start_service("gateway", {"CTROPS_REQUEST_BODY_TIMEOUT_S": "2", "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": "0"})
    boundary = "drip"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\nhour,seq,clicked\n").encode()
    stop = threading.Event()

    def drip(sock: socket.socket, piece: bytes) -> None:
        while not stop.wait(0.5):
            try:
                sock.sendall(piece)
            except OSError:
                return

    started = time.monotonic()
    upload = _stalled(gateway.port, "/api/upload", head, 1_000_000, f"multipart/form-data; boundary={boundary}")
    body = _stalled(gateway.port, "/api/train", b'{"file_id": "', 100_000, "application/json")
    drips = [threading.Thread(target=drip, args=(upload, b'1,"1,2",0\n'), daemon=True),
             threading.Thread(target=drip, args=(body, b"0000000000"), daemon=True)]
    for thread in drips:
        thread.start()
    try:
        for sock in (upload, body):
            status, headers, text = _answer(sock)
            detail = json.loads(text)["detail"]
            assert status == 408 and "too slowly" in detail and "CTROPS_REQUEST_BODY_MIN_RATE_BPS" in detail, text
            assert headers.get("connection") == "close"
        took = time.monotonic() - started
        assert 2 <= took < 10, took  # past the stall timeout, long before the body could have ended
    finally:
        stop.set()
        for sock in (upload, body):
            sock.close()
    uploads = data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir()), list(uploads.rglob("*"))


HEALTH_DEADLINE_S = 30


def test_two_thousand_stalled_uploads_at_once_leave_the_gateway_healthy_and_nothing_behind(start_service, data_dir):
    """Issue 17's attack: every stalled upload used to hold two file handles until the process ran out.

    /api/health must answer 200 throughout, each time within HEALTH_DEADLINE_S (a hung or exhausted
    gateway never answers). How fast is a matter of load, not of correctness: it waits behind the
    burst of 2,000 connections the gateway accepts and refuses, so it is printed, not asserted
    (slowest 3.6 s run alone on 2 cores, 13.7 s once in a full `make test` at 190% of them)."""
    gateway = start_service("gateway", {"CTROPS_REQUEST_BODY_TIMEOUT_S": "3", "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": "0"})
    boundary = "stall"
    head = (f"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: 1000000\r\n\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nhour,seq,clicked\n").encode()

    async def stall() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(head)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 60)
            return int(status_line.split()[1])
        finally:
            writer.close()

    async def health_while(task: asyncio.Future) -> list[float]:
        took = []
        while not task.done():
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b" 200 " in await asyncio.wait_for(reader.readline(), HEALTH_DEADLINE_S)
            writer.close()
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.5)
        return took

    async def attack() -> tuple[list[int], list[float]]:
        everything = asyncio.gather(*(stall() for _ in range(2000)))
        took = await health_while(everything)
        return await everything, took

    started = time.monotonic()
    statuses, health_s = asyncio.run(attack())
    elapsed = time.monotonic() - started
    counts = {s: statuses.count(s) for s in set(statuses)}
    print(f"2000 stalled uploads: {counts} in {elapsed:.1f} s, health max {max(health_s, default=0):.2f} s")
    assert set(counts) <= {408, 503} and counts.get(408, 0) >= 1, counts  # cut at the timeout, or refused at once
    assert counts.get(408, 0) <= 32 * (1 + int(elapsed / 3)), counts  # never more than the cap at a time
    assert health_s, "the attack ended before /api/health was asked once"
    uploads = data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir()), list(uploads.rglob("*"))[:10]

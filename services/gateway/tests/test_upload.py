"""POST /api/upload through the gateway and a real ingest process, on the real broker.

A handful of integration tests: the generated 60k file against the generator's truth, a
CP949 file with Korean column names, every bad input once through HTTP (status and
message; the ingest unit tests cover the variants); and the timeout when nobody answers
(no ingest at all: on the in-memory bus).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ctrops_common.datagen import NAME_SETS, generate
from ctrops_common.dataset import toss_columns
from ctrops_gateway.routes.upload import filename_problem

BOUNDARY = "ctropsboundary"


def _no_nan(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def raw_multipart(disposition: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A body built by hand, for file names a client library would clean up."""
    body = (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: text/csv\r\n\r\n").encode()
    body += data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def post_file(client, data: bytes, filename: str = "ads.csv"):
    return client.post("/api/upload", files={"file": (filename, data, "text/csv")})


@pytest.fixture(scope="module")
def generated_60k(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("upload") / "CTR_60000.csv"
    return path, generate(path, 60_000, seed=42)


def test_generated_60k_file_matches_the_generator_truth(start_service, gateway_client, generated_60k, data_dir):
    start_service("ingest")
    path, truth = generated_60k
    with open(path, "rb") as fh:
        response = gateway_client.post("/api/upload", files={"file": ("CTR_60000.csv", fh, "text/csv")})
    assert response.status_code == 200, response.text
    body = _no_nan(response.text)
    assert set(body) == {"file_id", "filename", "rows", "columns", "validation", "info", "preview",
                         "column_descriptions"}
    assert body["filename"] == "CTR_60000.csv"
    assert body["rows"] == truth["rows"] == 60_000
    assert body["columns"] == toss_columns() and len(body["columns"]) == 119
    assert body["validation"] == {"isValid": True, "errors": [], "warnings": []}
    info = body["info"]
    assert info["totalRows"] == 60_000 and info["totalColumns"] == 119
    assert info["clickedOne"] == truth["clicks"] and info["clickedZero"] == truth["non_clicks"]
    assert info["ctr"] == truth["ctr_percent"]
    assert info["duplicateRows"] == 0 and 0 < info["missingPercentage"] < 10
    assert len(body["preview"]) == 10 and list(body["preview"][0]) == body["columns"]
    assert body["column_descriptions"]["age_group"] == "연령대"
    assert body["column_descriptions"]["l_feat_14"].startswith("광고 속성 14")

    record = gateway_client.app.state.gateway.views.file_record(body["file_id"])  # what POST /api/train reads
    assert record is not None and record.rows == 60_000
    table = pq.read_table(data_dir / record.parquet_location, columns=["clicked"])
    assert table.num_rows == 60_000 and sum(table.column("clicked").to_pylist()) == truth["clicks"]
    assert (data_dir / record.profile_location).is_file()
    assert (data_dir / "uploads" / body["file_id"] / "original.csv").stat().st_size == path.stat().st_size


def test_cp949_file_with_korean_column_names_uploads(start_service, gateway_client, tmp_path):
    start_service("ingest")
    path = tmp_path / "광고_로그.csv"
    truth = generate(path, 1500, seed=9, encoding="cp949", rename=NAME_SETS["korean"])
    response = post_file(gateway_client, path.read_bytes(), filename="광고_로그.csv")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "광고_로그.csv"
    assert body["validation"]["isValid"] is True
    assert body["info"]["clickedOne"] == truth["clicks"]
    assert {"콘텐츠_카테고리", "스크롤_깊이", "최근_7일_노출수"} <= set(body["columns"])
    assert body["preview"][0]["콘텐츠_카테고리"] is not None
    assert body["column_descriptions"]["hour"] == "시간대"


GOOD_ROWS = "".join(f"{i % 24},\"1,2,{i}\",{int(i % 7 == 0)}\n" for i in range(40))


def test_every_bad_input_gets_its_status_and_message(unlimited_uploads, start_service, gateway_client, data_dir):
    start_service("ingest")
    rejected = [
        # (file name, content, status, words in the detail)
        ("empty.csv", b"", 400, "The file is empty"),
        ("header.csv", b"hour,seq,clicked\n", 400, "header but no data rows"),
        ("book.xlsx", b"PK\x03\x04" + b"\x00" * 200, 415, "Excel .xlsx workbook"),
        ("noise.bin", bytes(range(256)) * 8, 415, "binary data"),
        ("latin.csv", b"hour,seq,clicked\n1,\"1\",0\n\xff\xfe\xff,\"2\",1\n", 400, "neither UTF-8 nor CP949"),
        ("no_clicked.csv", b"hour,seq\n1,\"1,2\"\n", 400, "Required column missing: clicked"),
        ("no_seq.csv", b"hour,clicked\n1,0\n", 400, "Required column missing: seq"),
        ("dupes.csv", b"hour,seq,hour,clicked\n1,\"1\",2,0\n", 400, "Duplicate column names: 'hour' (2 times)"),
        ("ragged.csv", ("hour,seq,clicked\n" + GOOD_ROWS + "1,2,\"3\",0\n").encode(), 400,
         "1 row do not have 3 fields like the header (line 42 has 4)"),
    ]
    for name, content, status, words in rejected:
        response = post_file(gateway_client, content, filename=name)
        assert response.status_code == status, (name, response.text)
        assert words in response.json()["detail"], (name, response.json())

    # Data-quality problems: a 200 that says which column and how many rows.
    bad_clicked = ("hour,seq,clicked\n" + GOOD_ROWS + "1,\"1\",2\n2,\"1\",yes\n").encode()
    bad_seq = ("hour,seq,clicked\n" + GOOD_ROWS + "1,\"1,,2\",0\n2,\"a,b\",1\n3,\"1.5\",0\n").encode()
    accepted = []
    for content, words in ((bad_clicked, "clicked: 2 rows are not 0 or 1"),
                           (bad_seq, "seq: 3 rows are empty or not comma-separated integers")):
        response = post_file(gateway_client, content)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["validation"]["isValid"] is False
        assert any(words in e for e in body["validation"]["errors"]), body["validation"]
        accepted.append(body["file_id"])
        assert gateway_client.app.state.gateway.views.file_record(body["file_id"]).parquet_location is None

    # Refused by the gateway itself, before ingest sees anything.
    for disposition, words in (
        ('form-data; name="file"; filename="../../x.csv"', "plain name such as data.csv, not a path"),
        ('form-data; name="file"; filename="..\\\\..\\\\x.csv"', "not a path"),
        ('form-data; name="file"; filename=""', "has no name"),
        ('form-data; name="file"', "must be a file upload"),
        ('form-data; name="other"; filename="a.csv"', "no part named 'file'"),
    ):
        body, headers = raw_multipart(disposition, b"hour,seq,clicked\n1,\"1\",0\n")
        response = gateway_client.post("/api/upload", content=body, headers=headers)
        assert response.status_code == 400, (disposition, response.text)
        assert words in response.json()["detail"], (disposition, response.json())
    body, headers = raw_multipart('form-data; name="file"; filename="cut.csv"', b"hour,seq,clicked\n1,\"1\",0\n")
    response = gateway_client.post("/api/upload", content=body[:-12], headers=headers)  # no closing boundary
    assert response.status_code == 400 and "cut short" in response.json()["detail"]
    response = gateway_client.post("/api/upload", content=b"hour,seq,clicked\n", headers={"content-type": "text/csv"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]

    settings = gateway_client.app.state.gateway.settings
    settings.max_upload_mb = 0.01  # about 10 KB
    try:
        big = ("hour,seq,clicked\n" + GOOD_ROWS * 20).encode()
        assert len(big) > 0.01 * (1 << 20)
        response = post_file(gateway_client, big)  # refused on its Content-Length, before reading
        assert response.status_code == 413
        assert "larger than the upload limit of 0.01 MB (CTROPS_MAX_UPLOAD_MB)" in response.json()["detail"]
        body, headers = raw_multipart('form-data; name="file"; filename="big.csv"', big)
        chunked = (body[i:i + 4096] for i in range(0, len(body), 4096))  # no Content-Length: caught while streaming
        response = gateway_client.post("/api/upload", content=chunked, headers=headers)
        assert response.status_code == 413
        assert "upload limit" in response.json()["detail"]
    finally:
        settings.max_upload_mb = 500

    # Nothing is left of the rejected uploads: only the two accepted ones are stored.
    uploads = data_dir / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == sorted(accepted)
    assert not [p for p in uploads.rglob("*.part")]
    files = data_dir / "files"
    assert sorted(p.name for p in files.iterdir()) == sorted(accepted)


@pytest.mark.inmemory
def test_upload_answers_504_when_ingest_does_not_answer(memory_gateway):
    gateway_client = memory_gateway.client
    settings = gateway_client.app.state.gateway.settings
    settings.upload_timeout_s = 1.5
    try:
        response = post_file(gateway_client, ("hour,seq,clicked\n" + GOOD_ROWS).encode())
    finally:
        settings.upload_timeout_s = 600
    assert response.status_code == 504
    assert "did not finish checking the file within 1.5 s" in response.json()["detail"]


@pytest.mark.parametrize("name", ["data.csv", "광고 로그 (1).csv", "..csv", "C_drive.csv"])
def test_plain_file_names_are_accepted(name):
    assert filename_problem(name) is None


@pytest.mark.parametrize("name", ["../../x.csv", "a/b.csv", "a\\b.csv", "..", ".", "", "  ", "a\x00.csv", "x" * 256])
def test_path_like_or_empty_file_names_are_refused(name):
    assert filename_problem(name) is not None


def _feed(part, body: bytes, chunk: int = 7) -> None:
    from python_multipart.multipart import MultipartParser

    parser = MultipartParser(BOUNDARY.encode(), part.callbacks())
    for i in range(0, len(body), chunk):
        parser.write(body[i:i + chunk])
        if part.error:
            return
    parser.finalize()


def test_file_part_is_collected_across_tiny_chunks_with_a_utf8_name():
    from ctrops_gateway.routes.upload import _FilePart

    data = b"hour,seq,clicked\r\n1,\"1,2\",0\r\n" * 50
    body, _ = raw_multipart('form-data; name="file"; filename="광고.csv"', data)  # raw UTF-8 bytes, as browsers send
    part = _FilePart(limit_mb=1)
    _feed(part, body)
    assert part.error is None and part.found
    assert part.filename == "광고.csv"
    assert part.take() == data and part.size == len(data)


def test_file_part_stops_at_the_limit_and_keeps_nothing():
    from ctrops_gateway.routes.upload import _FilePart

    body, _ = raw_multipart('form-data; name="file"; filename="a.csv"', b"x" * 5000)
    part = _FilePart(limit_mb=4000 / (1 << 20))
    _feed(part, body, chunk=512)
    assert part.error is not None and part.error.status_code == 413
    assert part.pending == [] and part.size > 4000


def test_other_form_fields_are_bounded_too():
    from ctrops_gateway.routes.upload import _FilePart

    body, _ = raw_multipart('form-data; name="note"', b"y" * (70 * 1024))
    part = _FilePart(limit_mb=500)
    _feed(part, body, chunk=4096)
    assert part.error is not None and part.error.status_code == 413 and "other than 'file'" in part.error.detail

"""Property-based fuzzing of the real gateway over its own OpenAPI schema (schemathesis).

The gateway runs as a real process (uvicorn, every middleware) with a real ingest and a real
scorer beside it, on the real broker. The scorer is there because the schema's response examples
carry real-format run ids, which schemathesis reuses as path parameters: POST /api/predict/{run_id}
then reaches the scorer, which answers 404 for a run it does not know (without one the gateway
would answer its documented 503, "scorer unreachable", a 5xx the fuzzer counts as a server error).
Schemathesis generates valid and invalid requests for every documented operation and checks each
answer: no 5xx, a documented status code, content type and headers, a body matching the documented
schema. Two passes:

- auth off, rate limits off: the frontend's configuration, requests reach the routes;
- auth on with an operator key, default limits: the production configuration (429s are
  documented and expected), plus ``ignored_auth`` (the same requests without credentials
  must be refused).

Bounded by examples per operation and a fixed seed (well under a minute each on 2 cores);
the number of cases is printed and asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]
MAX_EXAMPLES = 20
OPERATOR_KEY = "fuzzing-operator-key-0123456789"


def run_schemathesis(url: str, report: Path, checks: list[str], *extra: str) -> tuple[dict, str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json",
        "--checks", ",".join(checks), "--max-examples", str(MAX_EXAMPLES), "--seed", "20261125",
        "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "60",
        "--generation-database", "none", "--no-color", "--output-truncate", "false",
        "--report", "json", "--report-json-path", str(report), *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = result.stdout[-30000:] + result.stderr[-4000:]
    assert report.is_file(), output
    return json.loads(report.read_text()), output


def assert_clean(summary: dict, output: str, label: str, elapsed: float, capsys) -> None:
    cases = summary["test_cases"]["generated"]
    operations = summary["operations"]
    with capsys.disabled():  # shown in every run (make test too), not only when the test fails
        print(f"\nschemathesis ({label}): {cases} cases over {operations['tested']} operations in {elapsed:.0f} s, "
              f"{summary['test_cases']['with_failures']} with failures")
    assert summary["exit_code"] == 0 and not summary["failures"] and not summary["errors"], output
    assert operations["tested"] == operations["selected"] == operations["total"] >= 15, operations
    assert cases >= 10 * operations["tested"], f"only {cases} cases: the run did not really fuzz"


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_service, tmp_path, capsys):
    workers = [start_service("ingest", wait=False), start_service("scorer", wait=False)]
    gateway = start_service("gateway", {
        "CTROPS_UPLOAD_TIMEOUT_S": "30", "CTROPS_REPORT_TIMEOUT_S": "5",
        "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": "0", "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN": "0",
    })
    for worker in workers:
        worker.wait_ready()
    started = time.monotonic()
    summary, output = run_schemathesis(f"http://127.0.0.1:{gateway.port}", tmp_path / "open.json", CHECKS)
    assert_clean(summary, output, "auth off", time.monotonic() - started, capsys)
    gateway.stop()
    assert "Traceback" not in gateway.log(), gateway.log()[-8000:]


@pytest.mark.timeout(900)
def test_schemathesis_with_authentication_on_and_default_limits(start_service, tmp_path, capsys):
    workers = [start_service("ingest", wait=False), start_service("scorer", wait=False)]
    gateway = start_service("gateway", {
        "CTROPS_UPLOAD_TIMEOUT_S": "30", "CTROPS_REPORT_TIMEOUT_S": "5",
        "CTROPS_AUTH_ENABLED": "true", "CTROPS_AUTH_API_KEYS": f"{OPERATOR_KEY}:operator:fuzzer",
    })
    for worker in workers:
        worker.wait_ready()
    started = time.monotonic()
    summary, output = run_schemathesis(
        f"http://127.0.0.1:{gateway.port}", tmp_path / "auth.json", [*CHECKS, "ignored_auth"],
        "--header", f"X-API-Key: {OPERATOR_KEY}",
    )
    assert_clean(summary, output, "auth on", time.monotonic() - started, capsys)
    gateway.stop()
    log = gateway.log()
    assert "Traceback" not in log, log[-8000:]
    assert OPERATOR_KEY not in log

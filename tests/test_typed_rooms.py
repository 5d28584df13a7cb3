"""Issue 14's greps, kept true: payloads are read as their models, never as dicts.

The gateway read events back with ``payload.get(...)`` (108 places before the redesign) and the
reporter guessed between key spellings (``feature``/``name``, ``p_value``/``pValue``). Both now read
typed models (docs/architecture.md); a dict lookup creeping back fails here, naming the line.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A dict lookup of a payload, or of a key in either of the frontend's spellings.
GATEWAY_DICT_READ = re.compile(r"\bpayload\.get\(|\bpayload\[[\"']")
REPORTER_KEY_GUESS = re.compile(r"\.get\([\"'](feature|name|p_value|pValue|features|drivers)[\"']")


def _hits(folder: str, pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_the_gateway_reads_no_payload_as_a_dict():
    assert _hits("services/gateway/src", GATEWAY_DICT_READ) == []


def test_the_reporter_guesses_no_keys():
    assert _hits("services/reporter/src", REPORTER_KEY_GUESS) == []


def test_the_patterns_catch_what_they_guard_against():
    assert GATEWAY_DICT_READ.search('run_id = event.payload.get("run_id")')
    assert GATEWAY_DICT_READ.search("run_id = payload['run_id']")
    assert REPORTER_KEY_GUESS.search('p = item.get("p_value") or item.get("pValue")')
    assert not GATEWAY_DICT_READ.search("run_id = event.payload.run_id")

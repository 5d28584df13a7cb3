"""The order ``make test`` hands files to its test processes: the longest first, from measured seconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ctrops_common.testing import load_script, longest_files_first

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Item:
    nodeid: str


def _script():
    return load_script(ROOT / "scripts" / "test_durations.py")


def test_longest_files_go_first_and_each_file_keeps_its_tests_together_in_order():
    items = [Item(n) for n in ("a.py::one", "a.py::two", "b.py::one", "c.py::one", "c.py::two", "d.py::one")]
    ordered = longest_files_first(items, {"a.py": 1.0, "c.py": 30.0, "b.py": 5.0})
    assert [i.nodeid for i in ordered] == ["c.py::one", "c.py::two", "b.py::one", "a.py::one", "a.py::two",
                                           "d.py::one"]  # d.py is not measured: after the measured ones
    assert sorted(ordered, key=items.index) == items  # the same items, none lost or added


def test_unmeasured_files_keep_their_collected_order():
    items = [Item(n) for n in ("z.py::t", "y.py::t", "z.py::u")]
    assert [i.nodeid for i in longest_files_first(items, {})] == ["z.py::t", "z.py::u", "y.py::t"]


def test_the_script_sums_each_files_seconds_from_junit_xml(tmp_path):
    xml = tmp_path / "run.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="services.gateway.tests.test_health" name="a" time="2.5"/>'
        '<testcase classname="services.gateway.tests.test_health" name="b" time="1.0"/>'
        '<testcase classname="tests.e2e.test_faults" name="c" time="9"/>'
        '<testcase classname="tests.test_gone" name="d" time="4"/>'  # a file that no longer exists
        '<testcase classname="libs.common.tests.test_bus.TestGroup" name="e" time="0.5"/>'
        "</testsuite></testsuites>")
    assert _script().durations(xml) == {"tests/e2e/test_faults.py": 9.0, "services/gateway/tests/test_health.py": 3.5,
                                        "libs/common/tests/test_bus.py": 0.5}


def test_the_committed_durations_name_test_files_of_this_repository():
    """A renamed file only loses its place in the order; this says when the figures need measuring again."""
    seconds = json.loads((ROOT / "tests" / "durations.json").read_text())
    assert len(seconds) > 50
    missing = [name for name in seconds if not (ROOT / name).is_file()]
    assert not missing, f"rerun scripts/test_durations.py: {missing}"

"""Write tests/durations.json, the measured seconds of each test file, from a pytest JUnit XML.

    PYTEST_ADDOPTS="--junitxml=/tmp/run.xml" make test && .venv/bin/python scripts/test_durations.py /tmp/run.xml

The root conftest.py hands the longest files out first (``make test`` runs files in several processes
with pytest-xdist's ``--dist loadfile``), so a long file never starts last while the other processes
sit idle. The figures only order the files: a stale or missing entry changes the wall time, never
which tests run or what they check.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = ROOT / "tests" / "durations.json"


def file_of(classname: str) -> str:
    """``services.gateway.tests.test_health`` (or ``...test_x.TestClass``) -> ``services/gateway/tests/test_health.py``."""
    parts = [part for part in classname.split(".") if not part[:1].isupper()]
    return "/".join(parts) + ".py"


def durations(junit_xml: Path) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        seconds[file_of(case.get("classname", ""))] += float(case.get("time") or 0)
    return {name: round(value, 1) for name, value in sorted(seconds.items(), key=lambda kv: -kv[1])
            if (ROOT / name).exists()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("junit_xml", type=Path)
    args = parser.parse_args()
    measured = durations(args.junit_xml)
    DURATIONS.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"{len(measured)} files, {sum(measured.values()):.0f} s in all -> {DURATIONS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""The documentation lists what the code has: every topic of the catalogue with its payload,
producers and consumers (docs/events.md, ctrops_common.event_catalogue), every service folder (README's layout, make run's list) and each service's
ports (docs/deploy.md)."""

from __future__ import annotations

import re
from pathlib import Path

from ctrops_common.event_catalogue import ROUTES
from ctrops_common.events import TOPIC_PAYLOADS, Topic
from ctrops_common.service import DEFAULT_PORTS
from ctrops_common.stack import SERVICES

ROOT = Path(__file__).resolve().parents[1]


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")]


def test_events_md_has_one_row_per_topic_with_its_payload():
    rows = {}
    for cells in table_rows((ROOT / "docs" / "events.md").read_text()):
        topic = re.fullmatch(r"`([a-z.]+)`", cells[0])
        if topic:
            assert topic.group(1) not in rows, f"{topic.group(1)} is listed twice"
            rows[topic.group(1)] = cells
    assert set(rows) == {t.value for t in Topic}, (
        f"missing: {sorted({t.value for t in Topic} - set(rows))}, unknown: {sorted(set(rows) - {t.value for t in Topic})}")
    for topic in Topic:
        assert rows[topic.value][1] == f"`{TOPIC_PAYLOADS[topic].__name__}`", topic.value
        route = ROUTES[topic]
        assert rows[topic.value][2] == route.cell(route.producers), (
            f"{topic.value}: docs/events.md says produced by {rows[topic.value][2]!r}, "
            f"ctrops_common.event_catalogue.ROUTES says {route.cell(route.producers)!r}")
        assert rows[topic.value][3] == route.cell(route.consumers), (
            f"{topic.value}: docs/events.md says consumed by {rows[topic.value][3]!r}, "
            f"ctrops_common.event_catalogue.ROUTES says {route.cell(route.consumers)!r}")


def test_every_service_folder_is_run_documented_and_numbered():
    folders = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert set(SERVICES) == folders == set(DEFAULT_PORTS), "make run, the folders and the ports disagree"
    layout = {cells[0] for cells in table_rows((ROOT / "README.md").read_text())}
    assert {f"`services/{name}`" for name in folders} <= layout, "README's layout table misses a service"
    ports = {cells[0]: cells[1] for cells in table_rows((ROOT / "docs" / "deploy.md").read_text()) if len(cells) == 3}
    for service, port in DEFAULT_PORTS.items():
        assert ports.get(service, "").split(",")[0] == str(port), f"docs/deploy.md: {service} listens on {port}"

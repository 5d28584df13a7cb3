"""The read model: stored once per event id, newest-first queries, snapshot retention."""

from __future__ import annotations

from ctrops_common.db import make_engine
from ctrops_common.events import Event, MonitorSnapshot, Topic
from ctrops_gateway.views import ReadModel


def _snapshot(i: int) -> Event:
    return Event(type=Topic.MONITOR_SNAPSHOT, payload=MonitorSnapshot(run_id=None, metrics={"i": i}, health={}))


def test_prune_keeps_only_the_newest_snapshots(tmp_path):
    views = ReadModel(make_engine(f"sqlite:///{tmp_path}/gw.sqlite3"))
    for i in range(12):
        assert views.record(_snapshot(i))
    views.prune(Topic.MONITOR_SNAPSHOT, keep=5)
    kept = views.events(Topic.MONITOR_SNAPSHOT)
    assert [e.payload["metrics"]["i"] for e in kept] == [7, 8, 9, 10, 11]
    assert views.latest(Topic.MONITOR_SNAPSHOT).payload["metrics"]["i"] == 11
    views.prune(Topic.MONITOR_SNAPSHOT, keep=5)  # nothing more to drop
    assert len(views.events(Topic.MONITOR_SNAPSHOT)) == 5

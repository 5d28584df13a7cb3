"""The file store: safe paths only, atomic writes."""

from __future__ import annotations

import pytest

from ctrops_common.storage import FileStore, UnsafePath, check_id


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/./b", "", "a\\..\\b"])
def test_unsafe_paths_are_refused(tmp_path, bad):
    with pytest.raises(UnsafePath):
        FileStore(tmp_path).path(bad)


def test_ids_are_32_hex():
    assert check_id("0" * 32)
    for bad in ("latest", "../" + "0" * 29, "A" * 32, "0" * 31):
        with pytest.raises(UnsafePath):
            check_id(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    store = FileStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.open_atomic("runs/abc/report.json") as fh:
            fh.write(b"half")
            raise RuntimeError("crash mid-write")
    assert not store.exists("runs/abc/report.json")
    assert list((tmp_path / "runs" / "abc").iterdir()) == []  # no temp file left either
    store.write_json("runs/abc/report.json", {"ok": "한국어"})
    assert store.read_json("runs/abc/report.json") == {"ok": "한국어"}

"""The generator: truth matches the file, the planted signal is there, options do what they say."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from ctrops_common.datagen import NAME_SETS, RECENT, generate, main
from ctrops_common.dataset import toss_columns


def read_rows(path, encoding="utf-8"):
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(encoding))))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "ctr.csv"
    truth = generate(path, 20_000, seed=5)
    return path, truth, read_rows(path)


def test_truth_sidecar_matches_the_file(sample):
    path, truth, rows = sample
    assert json.loads(path.with_name("ctr.csv.truth.json").read_text()) == truth
    assert truth["rows"] == len(rows) == 20_000
    assert truth["clicks"] == sum(int(r["clicked"]) for r in rows)
    assert truth["non_clicks"] == 20_000 - truth["clicks"]
    assert truth["ctr_percent"] == round(100 * truth["clicks"] / 20_000, 4)
    assert 1.0 < truth["ctr_percent"] < 3.5
    assert list(rows[0]) == toss_columns() == truth["columns"]
    assert len(truth["columns"]) == 119


def test_values_have_realistic_ranges(sample):
    _, _, rows = sample
    hours = {int(r["hour"]) for r in rows}
    assert hours == set(range(24))
    assert {int(r["day_of_week"]) for r in rows} == set(range(1, 8))
    assert {float(r["gender"]) for r in rows} == {1.0, 2.0}
    lengths = np.array([len(r["seq"].split(",")) for r in rows])
    assert lengths.min() >= 3 and lengths.max() <= 3000 and 50 < np.median(lengths) < 200
    missing_e = np.mean([r["feat_e_1"] == "" for r in rows])
    assert 0.1 < missing_e < 0.2
    assert all((r["feat_e_1"] == "") == (r["feat_e_10"] == "") for r in rows[:2000])  # a block goes missing together


def test_planted_signals_drive_clicks(sample):
    _, _, rows = sample
    clicked = np.array([int(r["clicked"]) for r in rows])

    def lift(mask):
        return clicked[mask].mean() / clicked[~mask].mean()

    recent = [r["seq"].split(",")[-RECENT:] for r in rows]
    older = [r["seq"].split(",")[:-RECENT] for r in rows]
    assert lift(np.array(["497" in t for t in recent])) > 2.5  # +1.4 logit
    assert lift(np.array(["251" in t for t in recent])) > 1.6  # +0.9 logit
    # Only recent tokens matter: 497 outside the window is never planted there.
    assert not any("497" in t for t in older)
    assert lift(np.isin([int(r["hour"]) for r in rows], [19, 20, 21, 22])) > 1.5
    assert lift(np.array([float(r["age_group"]) == 5 for r in rows])) > 1.3
    assert lift(np.array([float(r["history_a_1"]) > 1 for r in rows])) > 1.8
    assert 0.8 < lift(np.array([float(r["history_a_5"]) > 1 for r in rows])) < 1.25  # noise column


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    generate(a, 700, seed=1)
    generate(b, 700, seed=1)
    generate(c, 700, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_cp949_with_korean_names(tmp_path):
    path = tmp_path / "k.csv"
    truth = generate(path, 300, seed=3, encoding="cp949", rename=NAME_SETS["korean"])
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    rows = read_rows(path, "cp949")
    assert "콘텐츠_카테고리" in rows[0] and "feat_b_1" not in rows[0]
    assert truth["columns"] == list(rows[0])
    assert truth["planted_tabular"] == ["history_a_1", "hour", "l_feat_14", "age_group", "feat_a_3"]


def test_bom_once_and_index_column(tmp_path):
    path = tmp_path / "bom.csv"
    generate(path, 120, seed=3, encoding="utf-8-sig", index_column=True)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][-1] == "" and len(rows[0]) == 120
    assert [int(r[-1]) for r in rows[1:]] == list(range(120))


def test_size_target(tmp_path):
    path = tmp_path / "sized.csv"
    truth = generate(path, size_mb=3, seed=8)
    assert abs(path.stat().st_size - 3e6) < 0.02 * 3e6
    assert truth["rows"] == len(read_rows(path))


def test_rows_or_size_not_both(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path / "x.csv", 10, size_mb=1)


def test_command_line(tmp_path):
    out = tmp_path / "cli.csv"
    assert main([str(out), "--rows", "50", "--seed", "4", "--names", "renamed"]) == 0
    assert "content_category_id" in out.read_text().splitlines()[0]
    result = subprocess.run([sys.executable, "-m", "ctrops_common.datagen", str(out), "--rows", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--rows must be at least 1" in result.stderr

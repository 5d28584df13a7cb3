"""The challenger's model: seq features of hand-made windows, the fixed hash, the learned
vocabulary, and a saved GbdtModel that scores exactly as the one in memory."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pytest

from ctrops_common.gbdt import _BIGRAM_MIX, GbdtModel, SeqFeatureSpec, _hash, learn_vocab, seq_features
from ctrops_common.ml import Preprocess

SPEC = SeqFeatureSpec(recent=4, short=2, last_values=2, buckets=4, bigram_buckets=2, vocab=(7, 9))
# Right-padded windows, most recent last: "5 7 7", "1 2 3 4 5" (longer than recent=4), empty,
# and one of real zero tokens.
TOKENS = np.array([[5, 7, 7, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0], [0, 0, 9, 0, 0]], dtype=np.int32)
LENGTHS = np.array([3, 5, 0, 4])


def named(features: np.ndarray, spec: SeqFeatureSpec = SPEC) -> list[dict[str, float]]:
    names = spec.names()
    assert features.shape[1] == len(names)
    return [dict(zip(names, row.tolist())) for row in features]


def test_names_follow_the_spec():
    names = SPEC.names()
    assert names[:14] == ["seq_length", "seq_last_1", "seq_last_2", "seq_distinct_4", "seq_distinct_ratio_4",
                          "seq_repeats_4", "seq_changes_4", "seq_last_gap", "seq_last_count",
                          "seq_tok_7_4", "seq_tok_9_4", "seq_tok_7_age", "seq_tok_9_age", "seq_h0_4"]
    assert len(names) == 13 + 4 + 4 + 2 == len(set(names))
    assert all(name.startswith("seq_") for name in names)


def test_seq_features_of_hand_made_windows():
    features = seq_features(TOKENS, LENGTHS, SPEC)
    assert features.dtype == np.float32 and features.shape == (4, len(SPEC.names()))
    first, second, empty, zeros = named(features)

    # "5 7 7": newest first 7, 7, 5
    assert first["seq_length"] == 3
    assert (first["seq_last_1"], first["seq_last_2"]) == (7, 7)
    assert first["seq_distinct_4"] == 2 and first["seq_distinct_ratio_4"] == pytest.approx(2 / 3)
    assert (first["seq_repeats_4"], first["seq_changes_4"]) == (1, 1)
    assert (first["seq_last_gap"], first["seq_last_count"]) == (1, 2)  # 7 occurred one step earlier
    assert (first["seq_tok_7_4"], first["seq_tok_9_4"]) == (2, 0)
    assert first["seq_tok_7_age"] == 1 and math.isnan(first["seq_tok_9_age"])  # 7 is the newest; no 9
    seven = int(_hash(np.array([7]), 4)[0])
    assert first[f"seq_h{seven}_2"] == 2  # both of the last two tokens are 7
    assert sum(first[f"seq_h{b}_4"] for b in range(4)) == 3
    assert sum(first[f"seq_bi{b}_4"] for b in range(2)) == 2  # 5->7, 7->7

    # "1 2 3 4 5": only the last 4 tokens count in the recent window; the gap looks at the whole window
    assert second["seq_length"] == 5
    assert (second["seq_last_1"], second["seq_last_2"]) == (5, 4)
    assert second["seq_distinct_4"] == 4 and second["seq_distinct_ratio_4"] == 1.0
    assert (second["seq_repeats_4"], second["seq_changes_4"]) == (0, 3)
    assert math.isnan(second["seq_last_gap"]) and second["seq_last_count"] == 1
    assert second["seq_tok_7_4"] == 0 and math.isnan(second["seq_tok_7_age"])
    assert sum(second[f"seq_h{b}_4"] for b in range(4)) == 4
    assert sum(second[f"seq_h{b}_2"] for b in range(4)) == 2
    assert sum(second[f"seq_bi{b}_4"] for b in range(2)) == 3

    # empty: zero counts, NaN where a value does not exist
    assert empty["seq_length"] == 0 and empty["seq_last_count"] == 0
    for name in ("seq_last_1", "seq_last_2", "seq_distinct_ratio_4", "seq_last_gap"):
        assert math.isnan(empty[name])
    counts = {k: v for k, v in empty.items() if k.startswith(("seq_h", "seq_bi", "seq_tok", "seq_rep", "seq_ch"))}
    assert all(math.isnan(v) if k.endswith("_age") else v == 0 for k, v in counts.items())

    # "0 0 9 0": zero is a real token here (the length says so), not padding
    assert (zeros["seq_last_1"], zeros["seq_last_2"]) == (0, 9)
    assert zeros["seq_distinct_4"] == 2 and zeros["seq_tok_9_4"] == 1
    assert zeros["seq_tok_9_age"] == 2 and math.isnan(zeros["seq_tok_7_age"])
    assert (zeros["seq_last_gap"], zeros["seq_last_count"]) == (2, 3)
    assert (zeros["seq_repeats_4"], zeros["seq_changes_4"]) == (1, 2)


def test_vocabulary_counts_keep_the_spec_order_and_ages_reach_past_the_recent_window():
    spec = SeqFeatureSpec(recent=2, short=0, last_values=1, buckets=0, bigram_buckets=0, vocab=(9, 3))
    tokens = np.array([[3, 9, 1, 1, 3, 0]])  # newest first: 3, 1, 1, 9, 3
    row = named(seq_features(tokens, np.array([5]), spec), spec)[0]
    assert (row["seq_tok_9_2"], row["seq_tok_3_2"]) == (0, 1)  # only 3 is among the last 2
    assert (row["seq_tok_9_age"], row["seq_tok_3_age"]) == (4, 1)  # the newest occurrence of each


def test_padding_content_and_float_tokens_do_not_change_the_features():
    reference = seq_features(TOKENS, LENGTHS, SPEC)
    garbage = TOKENS.copy()
    garbage[0, 3:] = 7
    garbage[2, :] = 9
    np.testing.assert_array_equal(seq_features(garbage, LENGTHS, SPEC), reference)
    as_float = TOKENS.astype(np.float32) + np.float32(1e-3)  # floats holding integers (rounded)
    np.testing.assert_array_equal(seq_features(as_float, LENGTHS, SPEC), reference)
    # The matrix's width is only padding: a caller that pads to its batch's longest row gets the same.
    wider = np.pad(TOKENS, ((0, 0), (0, 7)))
    np.testing.assert_array_equal(seq_features(wider, LENGTHS, SPEC), reference)


def test_rows_are_independent_of_the_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=(300, 12))
    lengths = rng.integers(0, 13, size=300)
    whole = seq_features(tokens, lengths, SeqFeatureSpec(vocab=(1, 2, 3)))
    monkeypatch.setattr("ctrops_common.gbdt._CHUNK_ROWS", 7)
    np.testing.assert_array_equal(seq_features(tokens, lengths, SeqFeatureSpec(vocab=(1, 2, 3))), whole)
    np.testing.assert_array_equal(seq_features(tokens[5:6], lengths[5:6], SeqFeatureSpec(vocab=(1, 2, 3))),
                                  whole[5:6])


def reference_row(window: np.ndarray, length: int, spec: SeqFeatureSpec) -> list[float]:
    """One row's features in plain Python, read off the module docstring (no numpy tricks)."""
    nan = float("nan")
    seq = [int(t) for t in window[:length]]  # oldest first
    newest_first = seq[::-1]
    recent = newest_first[:spec.recent]
    repeats = sum(recent[i] == recent[i + 1] for i in range(len(recent) - 1))
    earlier = [j for j in range(length - 1) if seq[j] == seq[-1]] if length else []
    row = [float(length)]
    row += [float(newest_first[k]) if k < length else nan for k in range(spec.last_values)]
    row += [len(set(recent)), len(set(recent)) / len(recent) if recent else nan, repeats,
            max(len(recent) - 1, 0) - repeats]
    row += [(length - 1) - max(earlier) if earlier else nan, len(earlier) + 1 if length else 0]
    row += [recent.count(t) for t in spec.vocab]
    if spec.vocab_age:
        row += [length - max(j for j in range(length) if seq[j] == t) if t in seq else nan for t in spec.vocab]

    def counts(values: list[int], buckets: int) -> list[int]:
        out = [0] * buckets
        for b in _hash(np.array(values, dtype=np.uint64), buckets).tolist() if values else []:
            out[b] += 1
        return out

    row += counts(recent, spec.buckets)
    if spec.short:
        row += counts(recent[:spec.short], spec.buckets)
    mix = int(_BIGRAM_MIX)  # (older, newer) -> older * mix + newer, modulo 2^64
    row += counts([(recent[i + 1] * mix + recent[i]) % (1 << 64) for i in range(len(recent) - 1)], spec.bigram_buckets)
    return row


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_vectorised_features_equal_a_plain_per_row_reading(seed):
    rng = np.random.default_rng(seed)
    window = int(rng.integers(1, 40))
    tokens = rng.integers(0, 12, size=(400, window))  # few values: repeats, gaps and vocabulary hits are common
    tokens[rng.random(tokens.shape) < 0.05] = int(rng.integers(1 << 23, 1 << 30))  # rare huge tokens
    lengths = rng.integers(0, window + 1, size=400)
    spec = SeqFeatureSpec(recent=int(rng.integers(1, 20)), short=int(rng.integers(0, 4)), buckets=8,
                          bigram_buckets=4, vocab=(0, 3, 7, 11, 1 << 40))
    features = seq_features(tokens, lengths, spec)
    expected = np.array([reference_row(tokens[i], int(lengths[i]), spec) for i in range(400)], dtype=np.float32)
    np.testing.assert_array_equal(features, expected)


def test_the_hash_is_fixed():
    """Saved models depend on it: a change here silently changes every saved model's features."""
    tokens = np.array([0, 1, 2, 3, 7, 497, 251, 100_000])
    assert _hash(tokens, 32).tolist() == [0, 19, 7, 27, 10, 5, 4, 12]
    assert _hash(tokens, 4).tolist() == [0, 2, 0, 3, 1, 0, 0, 1]
    with pytest.raises(ValueError, match="power of two"):
        SeqFeatureSpec(buckets=48)


def test_learn_vocab_takes_the_most_frequent_recent_tokens():
    tokens = np.array([[9, 9, 9, 1, 2], [9, 9, 9, 1, 3], [9, 9, 9, 1, 2]])
    lengths = np.array([5, 5, 5])
    # Among the last 2 tokens: 1 x3, 2 x2, 3 x1; the older 9s are outside the window.
    assert learn_vocab(tokens, lengths, recent=2, size=2) == (1, 2)
    assert learn_vocab(tokens, lengths, recent=2, size=10) == (1, 2, 3)
    assert learn_vocab(tokens, lengths, recent=5, size=1) == (9,)
    assert learn_vocab(tokens, lengths, recent=2, size=0) == ()


def fitted_model() -> tuple[GbdtModel, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    n, f = 2_000, 3
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[rng.random((n, f)) < 0.1] = np.nan
    tokens = rng.integers(1, 40, size=(n, 10)).astype(np.int32)
    lengths = rng.integers(0, 11, size=n)
    spec = SeqFeatureSpec(vocab=learn_vocab(tokens, lengths, 16, 8))
    seq = seq_features(tokens, lengths, spec)
    recent_five = ((tokens == 5) & (np.arange(10)[None, :] < lengths[:, None])).any(axis=1)
    logit = np.nan_to_num(x[:, 0]) + 1.5 * recent_five - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    names = spec.names()
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 0, "num_threads": 1},
                        lgb.Dataset(np.concatenate([x, seq], axis=1), y, feature_name=["a", "b", "c"] + names),
                        num_boost_round=20)
    preprocess = Preprocess(feature_columns=["a", "b", "c"], fill_values=[0.0, 0.0, 0.0], max_seq_len=10,
                            seq_scale=1.0, lstm_hidden=0, mlp_hidden=[], dropout=0.0, base_rate=float(y.mean()),
                            train_rate=float(y.mean()), kind="gbdt", extra={"seq_features": spec.to_json()})
    return GbdtModel(preprocess=preprocess, booster=booster, seq_feature_names=names), x, tokens, lengths


def test_a_saved_model_loads_and_scores_identically(tmp_path):
    model, x, tokens, lengths = fitted_model()
    seq = model.encode_seq(tokens, lengths)
    logits = model.logits(x, seq)
    assert logits.dtype == np.float64 and logits.shape == (len(x),)
    assert logits.std() > 0.3  # the booster learned something to compare

    model.save(tmp_path / "gbdt")
    assert sorted(p.name for p in (tmp_path / "gbdt").iterdir()) == ["model.txt", "preprocess.json"]
    loaded = GbdtModel.load(tmp_path / "gbdt")
    assert loaded.preprocess == model.preprocess
    assert loaded.seq_feature_names == model.seq_feature_names
    assert loaded.feature_names == ["a", "b", "c"] + model.seq_feature_names
    assert loaded.booster.num_feature() == len(loaded.feature_names)
    np.testing.assert_array_equal(loaded.encode_seq(tokens, lengths), seq)
    np.testing.assert_array_equal(loaded.logits(x, seq), logits)
    # TreeSHAP contributions add up to the logit (the bias is the last column).
    contributions = loaded.contributions(x[:50], seq[:50])
    assert contributions.shape == (50, len(loaded.feature_names) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), logits[:50], atol=1e-9)


def test_logits_check_their_inputs():
    model, x, tokens, lengths = fitted_model()
    seq = model.encode_seq(tokens, lengths)
    with pytest.raises(ValueError, match="3 columns"):
        model.logits(x[:, :2], seq)
    with pytest.raises(ValueError, match="seq_features"):
        model.logits(x, seq[:, :-1])


def test_load_refuses_another_kind_of_model(tmp_path):
    model, *_ = fitted_model()
    model.preprocess.kind = "lstm"
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="lstm model"):
        GbdtModel.load(tmp_path / "m")

"""Both kinds of saved model load behind one scorer; the LSTM's MLflow wrapper scores like the model."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
import torch

from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, seq_features
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.mlflow_lstm import LstmPyfunc, input_columns
from ctrops_common.model_loading import ModelLoadError, load_ctr_model

FEATURES = ["hour", "age_group", "history_a_1"]


def _inputs(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(0, 24, n), rng.integers(1, 9, n), rng.normal(size=n)]).astype(np.float32)
    lengths = rng.integers(0, 9, n)
    tokens = np.zeros((n, 8), dtype=np.float32)
    for i, k in enumerate(lengths):
        tokens[i, :k] = rng.integers(1, 400, k)
    return x, tokens, lengths


def _lstm(folder, encoding: str = "embedding") -> tuple[TabularSeqModel, Preprocess]:
    torch.manual_seed(0)
    options = {"seq_encoding": "embedding", "seq_vocab": 64, "seq_embedding_dim": 3} if encoding == "embedding" else {}
    model = TabularSeqModel(3, 4, [8], 0.0, **options).eval()
    preprocess = Preprocess(FEATURES, [0.0] * 3, 8, 1.0 if options else 400.0, 4, [8], 0.0, base_rate=0.02,
                            train_rate=0.3, **options)
    save_model(folder, model, preprocess)
    return model, preprocess


def test_an_lstm_folder_loads_and_scores_as_the_model(tmp_path):
    model, _ = _lstm(tmp_path / "lstm")
    loaded = load_ctr_model(tmp_path / "lstm")
    x, tokens, lengths = _inputs()
    assert loaded.kind == "lstm" and loaded.uri is None and loaded.state_size == 4
    states = loaded.encode(tokens, lengths)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x), torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()
    assert states.shape == (64, 4)
    assert np.allclose(loaded.logits(x, states), expected, atol=1e-6)


def test_a_folder_saved_before_kinds_existed_is_an_lstm(tmp_path):
    _lstm(tmp_path / "old", encoding="scalar")
    values = json.loads((tmp_path / "old" / "preprocess.json").read_text())
    for key in ("kind", "seq_encoding", "seq_vocab", "seq_embedding_dim"):
        values.pop(key, None)
    (tmp_path / "old" / "preprocess.json").write_text(json.dumps(values))
    assert load_ctr_model(tmp_path / "old").kind == "lstm"


def test_a_gbdt_folder_loads_with_its_seq_features_as_states(tmp_path):
    x, tokens, lengths = _inputs(400, seed=1)
    spec = SeqFeatureSpec(buckets=4, bigram_buckets=4)
    y = (x[:, 2] + (lengths > 4) > 0.8).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 4},
                        lgb.Dataset(np.column_stack([x, seq_features(tokens, lengths, spec)]), y), 5)
    preprocess = Preprocess(FEATURES, [0.0] * 3, 8, 1.0, 0, [], 0.0, base_rate=0.3, train_rate=0.3, kind="gbdt",
                            extra={"seq_features": spec.to_json()})
    GbdtModel(preprocess, booster, spec.names()).save(tmp_path / "gbdt")
    loaded = load_ctr_model(tmp_path / "gbdt")
    states = loaded.encode(tokens, lengths)
    assert loaded.kind == "gbdt" and states.shape == (400, len(spec.names())) == (400, loaded.state_size)
    assert np.array_equal(states, seq_features(tokens, lengths, spec), equal_nan=True)
    raw = booster.predict(np.column_stack([x, states]), raw_score=True)
    assert np.allclose(loaded.logits(x, states), raw)
    assert np.allclose(loaded.probability(loaded.logits(x, states)), booster.predict(np.column_stack([x, states])))


def test_an_unknown_kind_or_a_missing_preprocess_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no preprocess.json"):
        load_ctr_model(tmp_path)
    (tmp_path / "preprocess.json").write_text(json.dumps({"kind": "forest"}))
    with pytest.raises(ModelLoadError, match="unknown model kind 'forest'"):
        load_ctr_model(tmp_path)


def test_the_mlflow_wrapper_gives_the_corrected_click_probability_from_one_matrix(tmp_path):
    model, preprocess = _lstm(tmp_path / "lstm")
    loaded = load_ctr_model(tmp_path / "lstm")
    x, tokens, lengths = _inputs()
    wrapper = LstmPyfunc(model, preprocess).eval()
    assert len(input_columns(preprocess)) == 3 + 8 + 1
    with torch.inference_mode():
        p = wrapper(torch.from_numpy(np.column_stack([x, tokens, lengths]).astype(np.float32))).numpy()
    expected = loaded.probability(loaded.logits(x, loaded.encode(tokens, lengths)))
    assert np.allclose(p, expected, rtol=1e-5, atol=1e-9)
    uncorrected = 1 / (1 + np.exp(-loaded.logits(x, loaded.encode(tokens, lengths))))
    assert np.all(p < uncorrected)  # trained at 30% clicks, corrected down to the 2% base rate

"""The compiled LightGBM forest (lleaves): the same raw scores as LightGBM on every threshold's
edge and on real rows, used only after that check, cached per model, and never used when it
differs or fails to build (the model stays on LightGBM)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from ctrops_common.events import new_id
from ctrops_common.storage import FileStore
from ctrops_common.testing import wait_for
from ctrops_scorer import compiled as compiled_module
from ctrops_scorer.batch import score_file
from ctrops_scorer.compiled import attach, check_equal, compile_forest, probe_rows, split_thresholds
from ctrops_scorer.models import compiled_cache_dir, load_model
from ctrops_scorer.predict import probabilities, table_rows


def _features(model, trained):
    rows = table_rows(model, pq.read_table(trained.parquet))
    return model.model.features(rows.x_tab, model.encode(rows.seq, rows.lengths))


def test_the_probe_rows_sit_on_and_beside_every_threshold(trained):
    text = (trained.folders["gbdt"] / "model.txt").read_text()
    thresholds = split_thresholds(text)
    assert thresholds and all(len(v) for v in thresholds.values())
    width = max(thresholds) + 1
    rows = probe_rows(text, width, rows=4000, seed=1)
    assert rows.shape == (4000, width) and rows.dtype == np.float32
    for feature, values in thresholds.items():
        column = rows[:, feature]
        assert np.isnan(column).any() and (column == 0).any()  # both missing-value branches
        t = values.astype(np.float32)
        for edge in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
            assert np.isin(edge, column).mean() > 0.5  # most edges drawn at 4,000 rows
    never_split = [f for f in range(width) if f not in thresholds]
    assert all((rows[:, f] == 0).all() for f in never_split)


def test_the_compiled_forest_scores_like_lightgbm(tmp_path, trained):
    model = trained.loaded("gbdt")
    gbdt = model.model
    forest = compile_forest(trained.folders["gbdt"] / "model.txt", tmp_path / "cache")
    x = _features(model, trained)
    expected = gbdt.booster.predict(x, raw_score=True)
    for threads in (1, 2):  # one slice after another, or slices on two threads
        np.testing.assert_allclose(forest.raw_scores([x], threads), expected, rtol=0, atol=1e-9)
    # the two blocks side by side (as the scorer passes them) are the same rows as their join
    tab = len(gbdt.preprocess.feature_columns)
    np.testing.assert_allclose(forest.raw_scores([x[:, :tab], x[:, tab:]]), expected, rtol=0, atol=1e-9)
    probes = probe_rows((trained.folders["gbdt"] / "model.txt").read_text(), x.shape[1])
    assert check_equal(forest, gbdt.booster, probes) <= 1e-9
    with pytest.raises(ValueError, match="do not make"):
        forest.raw_scores([x[:, :tab]])


def test_a_model_with_its_compiled_forest_scores_files_as_offline(tmp_path, trained, place_run):
    store = FileStore(tmp_path / "data")
    done = place_run(store, champion="gbdt")
    model = load_model(store, f"runs/{done.run_id}/model/gbdt", compile_trees="wait")
    assert model.model.compiled is not None and not model.model.compiled.from_cache
    assert list(compiled_cache_dir(store).glob("*.bin")) == [compiled_cache_dir(store) / f"{model.model.compiled.key}.bin"]
    assert not list(compiled_cache_dir(store).glob(".*"))  # written under a temp name, renamed: nothing left
    result = score_file(store, trained.parquet, new_id(), model, chunk_rows=3000, threads=2)
    with open(store.path(result.location)) as fh:
        p = np.array([float(line.split(",")[1]) for line in fh.read().splitlines()[1:]])
    np.testing.assert_allclose(p, trained.offline["gbdt"], rtol=0, atol=1e-6)
    again = load_model(store, f"runs/{done.run_id}/model/gbdt", compile_trees="wait")
    assert again.model.compiled.from_cache and again.model.compiled.key == model.model.compiled.key


def test_the_cache_key_follows_the_model_file(tmp_path, trained):
    first = tmp_path / "a" / "model.txt"
    first.parent.mkdir()
    shutil.copy(trained.folders["gbdt"] / "model.txt", first)
    other = tmp_path / "b" / "model.txt"
    other.parent.mkdir()
    other.write_text(first.read_text().replace("learning_rate: 0.1", "learning_rate: 0.10"))
    assert compiled_module.cache_key(first) == compiled_module.cache_key(trained.folders["gbdt"] / "model.txt")
    assert compiled_module.cache_key(first) != compiled_module.cache_key(other)


def _tampered(trained, folder):
    """The model's text with one leaf of its first tree moved: what a miscompiled forest would score."""
    text = (trained.folders["gbdt"] / "model.txt").read_text()
    start = text.index("leaf_value=") + len("leaf_value=")
    end = text.index(" ", start)
    path = folder / "model.txt"
    path.write_text(text[:start] + repr(float(text[start:end]) + 0.25) + text[end:])
    return path


def test_a_forest_that_differs_from_lightgbm_is_never_used(tmp_path, trained, caplog):
    gbdt = trained.loaded("gbdt").model
    caplog.set_level(logging.WARNING, logger="ctrops_scorer.compiled")
    assert attach(gbdt, _tampered(trained, tmp_path), tmp_path / "cache") is False
    assert gbdt.compiled is None
    assert "stays on LightGBM" in caplog.text and "differs from LightGBM by 0.25" in caplog.text


def test_a_forest_that_cannot_be_built_leaves_the_model_on_lightgbm(tmp_path, trained, place_run, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(compiled_module, "compile_forest", broken)
    store = FileStore(tmp_path / "data")
    done = place_run(store, champion="gbdt")
    model = load_model(store, f"runs/{done.run_id}/model/gbdt", compile_trees="wait")
    assert model.model.compiled is None
    rows = table_rows(model, pq.read_table(trained.parquet))
    np.testing.assert_allclose(probabilities(model, rows), trained.offline["gbdt"], rtol=0, atol=1e-12)


def test_in_the_background_the_model_serves_on_lightgbm_then_on_the_checked_forest(tmp_path, trained, place_run,
                                                                                   monkeypatch):
    import threading

    release = threading.Event()
    real = compiled_module.compile_forest

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(compiled_module, "compile_forest", slow)
    store = FileStore(tmp_path / "data")
    done = place_run(store, champion="gbdt")
    model = load_model(store, f"runs/{done.run_id}/model/gbdt", compile_trees="background")
    rows = table_rows(model, pq.read_table(trained.parquet))
    assert model.model.compiled is None  # not yet: answers come from LightGBM meanwhile
    np.testing.assert_allclose(probabilities(model, rows), trained.offline["gbdt"], rtol=0, atol=1e-12)
    release.set()
    wait_for(lambda: model.model.compiled, lambda forest: forest is not None, timeout_s=60)
    np.testing.assert_allclose(probabilities(model, rows), trained.offline["gbdt"], rtol=0, atol=1e-6)

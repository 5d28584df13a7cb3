"""The LightGBM champion compiled to machine code (lleaves), used only once it is checked equal to LightGBM.

``Booster.predict`` walks 235 trees per row through a generic interpreter: on a 600k-row batch it
was the largest single cost (3.3-3.8 s of CPU, bench/scoring.py). lleaves turns the same
``model.txt`` into native code with LLVM (llvmlite's bundled LLVM: no compiler on the machine);
it compares each value with each threshold exactly as LightGBM does (in float64, with the
model's missing-value rules), so it gives the same raw scores, only summed in another order
(measured differences ~1e-14).

Nothing here is trusted on that word:
- ``probe_rows`` builds rows that sit exactly on every split threshold of the model and one
  float32 step either side of it, plus NaN and 0 (each model's missing-value branches), and
  ``attach`` hands the forest to the model only if it scores those rows within
  ``TOLERANCE`` of LightGBM. Any failure (lleaves missing, a compile
  error, a mismatch) leaves the model on LightGBM with a warning: slower, never different.
- The compiled code is cached per model file, lleaves/llvmlite version and host CPU (the
  code uses the CPU's instruction set): a scorer restarted on the same machine loads it in
  milliseconds instead of compiling again (3.7 s for 235 trees), and a cache written on
  another CPU is never read. The file is written under a temporary name and renamed, so a
  second replica never reads half of one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TOLERANCE = 1e-9  # raw score (log-odds); the product promises 1e-6 on probabilities
SLICE_ROWS = 1_024  # rows joined into float64 at a time (2.6 MB at 320 features: cache-sized; 8,192 was slower
# and raised a batch's peak RSS by ~100 MB)
PROBE_ROWS = 2_000


class CompileMismatch(Exception):
    """The compiled forest does not score like LightGBM (never used then)."""


@dataclass
class CompiledForest:
    """Native code of one ``model.txt``; ``raw_scores`` = ``Booster.predict(raw_score=True)``."""

    model: object  # lleaves.Model, compiled
    n_features: int
    key: str
    compile_s: float
    from_cache: bool

    def raw_scores(self, blocks: Sequence[np.ndarray], threads: int = 1) -> np.ndarray:
        """Raw scores of the rows whose features are ``blocks`` side by side (each (n, k); the
        tabular columns then the seq features, as ``GbdtModel.features`` joins them), float64 (n,).
        The blocks are joined slice by slice straight into float64, never as one (n, F) copy."""
        n = blocks[0].shape[0]
        widths = [b.shape[1] for b in blocks]
        if sum(widths) != self.n_features or any(b.shape[0] != n for b in blocks):
            raise ValueError(f"feature blocks {[b.shape for b in blocks]} do not make {self.n_features} columns")
        out = np.empty(n, dtype=np.float64)
        starts = range(0, n, SLICE_ROWS)

        def one(lo: int) -> None:
            hi = min(n, lo + SLICE_ROWS)
            x = np.empty((hi - lo, self.n_features), dtype=np.float64)
            col = 0
            for block, width in zip(blocks, widths):
                x[:, col:col + width] = block[lo:hi]
                col += width
            out[lo:hi] = self.model.predict(x, n_jobs=1)  # the native call releases the GIL

        if threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="forest") as pool:
                list(pool.map(one, starts))
        else:
            for lo in starts:
                one(lo)
        return out


def cache_key(model_file: Path) -> str:
    """Model text, compiler versions and host CPU (name and features): what the machine code depends on."""
    import llvmlite.binding as llvm

    digest = hashlib.sha256(Path(model_file).read_bytes())
    for part in (metadata.version("lleaves"), metadata.version("llvmlite"), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten()):
        digest.update(b"\0" + str(part).encode())
    return digest.hexdigest()[:32]


def compile_forest(model_file: Path, cache_dir: Path | None = None) -> CompiledForest:
    """Compile ``model_file`` (LightGBM text format) to raw scores, through the cache when given."""
    import lleaves

    started = time.perf_counter()
    key = cache_key(model_file)
    model = lleaves.Model(model_file=str(model_file))
    cached = Path(cache_dir) / f"{key}.bin" if cache_dir is not None else None
    from_cache = cached is not None and cached.is_file()
    if from_cache or cached is None:
        model.compile(cache=str(cached) if from_cache else None, raw_score=True)
    else:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=cached.parent)
        os.close(fd)
        os.unlink(tmp)  # lleaves writes the cache only where no file is
        try:
            model.compile(cache=tmp, raw_score=True)
            os.replace(tmp, cached)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return CompiledForest(model=model, n_features=int(model.num_feature()), key=key,
                          compile_s=time.perf_counter() - started, from_cache=from_cache)


def split_thresholds(model_text: str) -> dict[int, np.ndarray]:
    """Every numerical split's threshold per feature index, read from LightGBM's text format."""
    found: dict[int, list[float]] = {}
    features: list[int] = []
    for line in model_text.splitlines():
        if line.startswith("split_feature="):
            features = [int(v) for v in line.split("=", 1)[1].split()]
        elif line.startswith("threshold=") and features:
            for feature, value in zip(features, line.split("=", 1)[1].split()):
                found.setdefault(feature, []).append(float(value))
            features = []
    return {f: np.unique(np.asarray(v, dtype=np.float64)) for f, v in found.items()}


def probe_rows(model_text: str, n_features: int, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """(rows, n_features) float32 rows whose values lie on and one float32 step either side of the
    model's thresholds, or are NaN or 0: the boundaries where two predictors could disagree."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, n_features), dtype=np.float32)
    for feature, thresholds in split_thresholds(model_text).items():
        if feature >= n_features:
            continue
        t = thresholds.astype(np.float32)
        values = np.concatenate([t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)),
                                 np.array([np.nan, 0.0], dtype=np.float32)])
        out[:, feature] = rng.choice(values, size=rows)
    return out


def check_equal(forest: CompiledForest, booster, rows: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Largest |compiled - LightGBM| raw score over ``rows``; ``CompileMismatch`` above ``tolerance``."""
    expected = np.asarray(booster.predict(rows, raw_score=True, num_threads=1), dtype=np.float64)
    got = forest.raw_scores([rows])
    worst = float(np.max(np.abs(got - expected))) if rows.shape[0] else 0.0
    if not worst <= tolerance:  # NaN counts as a mismatch
        raise CompileMismatch(f"the compiled forest differs from LightGBM by {worst:.3g} on {rows.shape[0]} rows "
                              f"(tolerance {tolerance:g})")
    return worst


def attach(gbdt, model_file: Path, cache_dir: Path | None) -> bool:
    """Compile ``gbdt``'s forest, check it against its booster and set ``gbdt.compiled``; False (the
    model stays on LightGBM, a warning logged) when anything fails. Blocking: a thread of its own."""
    try:
        forest = compile_forest(model_file, cache_dir)
        rows = probe_rows(Path(model_file).read_text(), forest.n_features)
        worst = check_equal(forest, gbdt.booster, rows)
    except Exception as exc:  # noqa: BLE001 - any failure means: keep LightGBM
        log.warning("the LightGBM model at %s stays on LightGBM's own predictor: %s: %s", model_file,
                    type(exc).__name__, exc)
        return False
    gbdt.compiled = forest
    log.info("compiled the LightGBM model at %s (%s in %.2f s; equal to LightGBM within %.1e on %d rows)",
             model_file, "from cache" if forest.from_cache else "compiled", forest.compile_s, worst, len(rows))
    return True


def attach_in_background(gbdt, model_file: Path, cache_dir: Path | None) -> threading.Thread:
    """``attach`` in a daemon thread: the model serves on LightGBM until its compiled forest is checked."""
    thread = threading.Thread(target=attach, args=(gbdt, model_file, cache_dir), name="compile-forest", daemon=True)
    thread.start()
    return thread

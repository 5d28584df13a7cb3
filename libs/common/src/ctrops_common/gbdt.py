"""The gradient-boosting challenger's model: LightGBM over tabular features plus generic ``seq`` features.

Trees cannot read a sequence, so ``seq`` becomes a fixed set of numbers per row, computed
once for the whole file with numpy (no Python work per row) from the same window the
LSTM sees: the ``(n, L)`` right-padded matrix of each row's most recent tokens (most
recent last) and the number of tokens kept. Nothing here knows which tokens matter; the
features say what a recent history looks like, and the trees find what of it predicts a
click:

- ``seq_length``: tokens in the window (the full length before the window is not known here);
- ``seq_last_1`` .. ``seq_last_4``: the most recent tokens as values (NaN where absent);
- ``seq_distinct_16`` / ``seq_distinct_ratio_16``: distinct tokens among the last 16 and their
  share of the tokens there; ``seq_repeats_16``: adjacent equal pairs there (a user repeating
  the same action) and ``seq_changes_16``: adjacent different pairs;
- ``seq_last_gap``: steps back to the previous occurrence of the most recent token in the
  window (NaN if it has none) and ``seq_last_count``: its occurrences in the window;
- ``seq_tok_<t>_16`` and ``seq_tok_<t>_age``: for each token of a vocabulary, its count among
  the last 16 tokens and the steps back to its newest occurrence anywhere in the window (1 =
  the most recent token, NaN if absent), so the trees can pick any recency cut-off. The
  vocabulary is the 64 tokens most frequent among the training rows' last 16 tokens,
  learned from the data at fit time and saved with the model: a token gets features of its
  own, named by its value, because it is frequent, not because it is known to matter;
- ``seq_h<b>_16``: counts of the last 16 tokens hashed into ``buckets`` buckets (every
  token, in the vocabulary or not, lands somewhere);
- ``seq_bi<b>_16``: counts of the last 15 transitions (previous token -> next token)
  hashed into ``bigram_buckets`` buckets.

Hashing is Fibonacci hashing (multiply by 2^64/phi, keep the top bits): fixed, seedless,
and the same on every machine, so a saved model's features are reproduced exactly.

A saved model is a folder: ``model.txt`` (LightGBM's text format) and ``preprocess.json``
(``Preprocess`` with ``kind="gbdt"``; the seq feature settings and vocabulary in
``extra["seq_features"]``, the feature names in ``extra["feature_names"]``). Missing tabular
values may be passed as NaN (the model learned LightGBM's own missing-value branches on
NaN); values filled with ``preprocess.fill_values`` are scored too, as ordinary values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from .preprocess import Preprocess

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / phi, odd: Fibonacci hashing
_BIGRAM_MIX = np.uint64(0xC2B2AE3D27D4EB4F)  # a second odd constant to combine two tokens
_CHUNK_ROWS = 8_192  # bounds the temporaries of one pass (a few MB each)


@dataclass(frozen=True)
class SeqFeatureSpec:
    """How ``seq`` becomes features; saved with the model so scoring computes the same ones."""

    recent: int = 16  # the "recent" window of the counts and transition summaries
    short: int = 0  # a short window for a second set of hashed counts (0: none; measured no gain)
    last_values: int = 4  # most recent tokens given as values
    buckets: int = 32  # hashed unigram buckets (a power of two)
    bigram_buckets: int = 32  # hashed transition buckets (a power of two)
    vocab: tuple[int, ...] = ()  # tokens counted by value (learned from the training rows)
    vocab_age: bool = True  # also each vocabulary token's steps back to its newest occurrence

    def __post_init__(self) -> None:
        for name in ("buckets", "bigram_buckets"):
            value = getattr(self, name)
            if value and value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value}")

    def names(self) -> list[str]:
        r, s = self.recent, self.short
        names = ["seq_length"]
        names += [f"seq_last_{k}" for k in range(1, self.last_values + 1)]
        names += [f"seq_distinct_{r}", f"seq_distinct_ratio_{r}", f"seq_repeats_{r}", f"seq_changes_{r}",
                  "seq_last_gap", "seq_last_count"]
        names += [f"seq_tok_{t}_{r}" for t in self.vocab]
        names += [f"seq_tok_{t}_age" for t in (self.vocab if self.vocab_age else ())]
        names += [f"seq_h{b}_{r}" for b in range(self.buckets)]
        names += [f"seq_h{b}_{s}" for b in range(self.buckets if s else 0)]
        names += [f"seq_bi{b}_{r}" for b in range(self.bigram_buckets)]
        return names

    def to_json(self) -> dict:
        return {**asdict(self), "vocab": [int(t) for t in self.vocab]}

    @classmethod
    def from_json(cls, data: dict) -> SeqFeatureSpec:
        return cls(**{**data, "vocab": tuple(int(t) for t in data.get("vocab", ()))})


def _hash(values: np.ndarray, buckets: int) -> np.ndarray:
    bits = int(buckets).bit_length() - 1
    if bits == 0:
        return np.zeros(values.shape, dtype=np.int64)
    mixed = values.astype(np.uint64) * _GOLDEN  # wraps modulo 2^64, as intended
    return (mixed >> np.uint64(64 - bits)).astype(np.int64)


def _recent_first(tokens: np.ndarray, lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) tokens newest first (column 0 = most recent), -1 where the row has fewer; and the mask."""
    steps = np.arange(width, dtype=np.int64)
    index = lengths[:, None] - 1 - steps[None, :]
    valid = index >= 0
    if tokens.shape[1] == 0:
        return np.full((len(lengths), width), -1, dtype=np.int64), valid
    picked = np.take_along_axis(tokens, np.clip(index, 0, tokens.shape[1] - 1), axis=1).astype(np.int64)
    return np.where(valid, picked, -1), valid


def _bucket_counts(buckets: np.ndarray, valid: np.ndarray, n_buckets: int) -> np.ndarray:
    """Per row, how many valid entries fall in each bucket: (n, n_buckets)."""
    n = buckets.shape[0]
    flat = (np.arange(n, dtype=np.int64)[:, None] * n_buckets + buckets)[valid]
    return np.bincount(flat, minlength=n * n_buckets).reshape(n, n_buckets).astype(np.float32)


def _as_int_tokens(tokens: np.ndarray) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be a (rows, window) matrix, got shape {tokens.shape}")
    if np.issubdtype(tokens.dtype, np.floating):
        tokens = np.rint(np.nan_to_num(tokens, nan=0.0))
    return tokens.astype(np.int64, copy=False)


def seq_features(tokens: np.ndarray, lengths: np.ndarray, spec: SeqFeatureSpec) -> np.ndarray:
    """(n, L) right-padded tokens (most recent last), (n,) kept lengths -> (n, len(spec.names())) float32."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be a (rows, window) matrix, got shape {tokens.shape}")
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64).ravel(), tokens.shape[1])
    if lengths.shape[0] != tokens.shape[0]:
        raise ValueError(f"{tokens.shape[0]} token rows but {lengths.shape[0]} lengths")
    n = tokens.shape[0]
    out = np.empty((n, len(spec.names())), dtype=np.float32)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        out[lo:hi] = _seq_block(tokens[lo:hi], lengths[lo:hi], spec)
    return out


def _seq_block(tokens: np.ndarray, lengths: np.ndarray, spec: SeqFeatureSpec) -> np.ndarray:
    n, window = tokens.shape
    r = spec.recent
    tokens = _as_int_tokens(tokens)
    columns = [lengths.astype(np.float32)[:, None]]

    recent, valid = _recent_first(tokens, lengths, max(r, spec.last_values))
    last = recent[:, :spec.last_values].astype(np.float32)
    last[~valid[:, :spec.last_values]] = np.nan
    columns.append(last)

    recent, valid = recent[:, :r], valid[:, :r]
    kept = valid.sum(axis=1)
    ordered = np.sort(recent, axis=1)  # pads (-1) first
    new_value = np.ones_like(ordered, dtype=bool)
    new_value[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    distinct = (new_value & (ordered >= 0)).sum(axis=1)
    pairs = valid[:, 1:]  # (newer, older) both present
    same = (recent[:, 1:] == recent[:, :-1]) & pairs
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(kept > 0, distinct / np.maximum(kept, 1), np.nan)
    columns.append(np.stack([distinct, ratio, same.sum(axis=1), (pairs & ~same).sum(axis=1)], axis=1))

    # The most recent token's history in the whole window: when did it last occur, how often.
    step = np.arange(window, dtype=np.int64)
    before_newest = step[None, :] < (lengths - 1)[:, None]
    again = (tokens == recent[:, :1]) & before_newest
    earlier = np.count_nonzero(again, axis=1)
    previous = window - 1 - np.argmax(again[:, ::-1], axis=1)  # newest earlier position (when earlier > 0)
    gap = np.where(earlier > 0, (lengths - 1) - previous, np.nan)
    count = np.where(lengths > 0, earlier + 1, 0)
    columns.append(np.stack([gap, count], axis=1))

    if spec.vocab:
        v = len(spec.vocab)
        base = np.arange(n, dtype=np.int64)[:, None] * v  # (row, vocabulary token) -> flat index
        # Counts among the recent tokens only (read from ``recent``, a few columns, not the window).
        recent_slot = _vocab_slots(recent, spec.vocab)
        counted = recent_slot >= 0
        columns.append(np.bincount((base + recent_slot)[counted], minlength=n * v).reshape(n, v))
        if spec.vocab_age:
            # The newest position of each vocabulary token in the row: the largest of its positions.
            slot = _vocab_slots(tokens, spec.vocab)  # (n, window): position in spec.vocab, -1 if not in it
            known = (slot >= 0) & (step[None, :] < lengths[:, None])
            rows, positions = np.nonzero(known)
            newest = np.full(n * v, -1, dtype=np.int64)
            np.maximum.at(newest, rows * v + slot[rows, positions], positions)
            newest = newest.reshape(n, v)
            columns.append(np.where(newest >= 0, lengths[:, None] - newest, np.nan))
    if spec.buckets:
        hashed = _hash(np.maximum(recent, 0), spec.buckets)
        columns.append(_bucket_counts(hashed, valid, spec.buckets))
        if spec.short:
            s = min(spec.short, r)
            columns.append(_bucket_counts(hashed[:, :s], valid[:, :s], spec.buckets))
    if spec.bigram_buckets:
        newer, older = np.maximum(recent[:, :-1], 0), np.maximum(recent[:, 1:], 0)
        pair_code = older.astype(np.uint64) * _BIGRAM_MIX + newer.astype(np.uint64)
        columns.append(_bucket_counts(_hash(pair_code, spec.bigram_buckets), pairs, spec.bigram_buckets))
    return np.concatenate([np.asarray(c, dtype=np.float32).reshape(n, -1) for c in columns], axis=1)


_TABLE_LIMIT = 1 << 22  # tokens below this are looked up in a table (16 MB at most), others searched


def _vocab_slots(tokens: np.ndarray, vocab: tuple[int, ...]) -> np.ndarray:
    """Each token's position in ``vocab`` (-1 if absent; negative tokens are padding, also -1)."""
    values = np.asarray(vocab, dtype=np.int64)
    top = int(tokens.max()) if tokens.size else 0
    if top < _TABLE_LIMIT:
        table = np.full(max(top, int(values.max())) + 1, -1, dtype=np.int64)
        table[values] = np.arange(len(values))
        return np.where(tokens >= 0, table[np.maximum(tokens, 0)], -1)
    order = np.argsort(values)
    found = np.minimum(np.searchsorted(values[order], tokens), len(values) - 1)
    return np.where(values[order][found] == tokens, order[found], -1)


def learn_vocab(tokens: np.ndarray, lengths: np.ndarray, recent: int, size: int) -> tuple[int, ...]:
    """The ``size`` tokens most frequent among the last ``recent`` tokens of these rows (ties: smaller token)."""
    if size <= 0 or tokens.shape[0] == 0:
        return ()
    recent_tokens, valid = _recent_first(_as_int_tokens(tokens), np.asarray(lengths, dtype=np.int64), recent)
    values, counts = np.unique(recent_tokens[valid], return_counts=True)
    order = np.lexsort((values, -counts))[:size]
    return tuple(int(t) for t in np.sort(values[order]))


@dataclass
class GbdtModel:
    """A fitted LightGBM booster with the preprocessing that turns a row into its features."""

    preprocess: Preprocess
    booster: lgb.Booster
    seq_feature_names: list[str] = field(default_factory=list)
    threads: int = 1  # scoring threads (prediction is cheap; the services share their cores)
    # A faster predictor of the same raw scores, used by ``logits`` when set: the scorer's compiled
    # forest (ctrops_scorer.compiled), set only after it was checked equal to ``booster``.
    compiled: Any = None

    @property
    def seq_spec(self) -> SeqFeatureSpec:
        return SeqFeatureSpec.from_json(self.preprocess.extra["seq_features"])

    @property
    def feature_names(self) -> list[str]:
        """Tabular columns then ``seq_*`` features: the booster's columns, in order (for TreeSHAP)."""
        return list(self.preprocess.feature_columns) + list(self.seq_feature_names)

    def encode_seq(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(n, L) right-padded tokens, most recent last (ints, or floats holding ints) -> (n, S) float32."""
        return seq_features(tokens, lengths, self.seq_spec)

    def features(self, x_tab: np.ndarray, seq_features: np.ndarray) -> np.ndarray:
        return np.concatenate(self._checked(x_tab, seq_features), axis=1)

    def _checked(self, x_tab: np.ndarray, seq_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both blocks as float32 (what the booster was fitted on), their shapes checked."""
        x_tab = np.asarray(x_tab, dtype=np.float32)
        seq_features = np.asarray(seq_features, dtype=np.float32)
        if x_tab.ndim != 2 or x_tab.shape[1] != len(self.preprocess.feature_columns):
            raise ValueError(f"x_tab must have {len(self.preprocess.feature_columns)} columns, got {x_tab.shape}")
        if seq_features.shape != (x_tab.shape[0], len(self.seq_feature_names)):
            raise ValueError(f"seq_features must be ({x_tab.shape[0]}, {len(self.seq_feature_names)}), "
                             f"got {seq_features.shape}")
        return x_tab, seq_features

    def logits(self, x_tab: np.ndarray, seq_features: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Raw scores (log-odds at ``preprocess.train_rate``), float64 (n,); ``threads`` overrides ``self.threads``."""
        compiled = self.compiled
        if compiled is not None:
            x_tab, seq_features = self._checked(x_tab, seq_features)
            return compiled.raw_scores([x_tab, seq_features], threads or self.threads)
        return np.asarray(self.booster.predict(self.features(x_tab, seq_features), raw_score=True,
                                               num_threads=threads or self.threads), dtype=np.float64)

    def contributions(self, x_tab: np.ndarray, seq_features: np.ndarray) -> np.ndarray:
        """TreeSHAP: (n, F + S + 1) per-feature contributions to the logit, the bias last."""
        return np.asarray(self.booster.predict(self.features(x_tab, seq_features), pred_contrib=True,
                                               num_threads=self.threads), dtype=np.float64)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        self.preprocess.save(folder / "preprocess.json")

    @classmethod
    def load(cls, folder: Path) -> GbdtModel:
        folder = Path(folder)
        preprocess = Preprocess.load(folder / "preprocess.json")
        if getattr(preprocess, "kind", "gbdt") != "gbdt":
            raise ValueError(f"{folder} holds a {preprocess.kind} model, not a gbdt one")
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        names = SeqFeatureSpec.from_json(preprocess.extra["seq_features"]).names()
        return cls(preprocess=preprocess, booster=booster, seq_feature_names=names)


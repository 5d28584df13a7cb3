"""Load a trained CTR model of either kind (LSTM+MLP or LightGBM) behind one numpy scoring interface.

A run trains two models; the explainer (and anything else that scores) must treat them
alike. ``LoadedModel`` splits scoring the way the explainer needs it:

- ``encode(seq, lengths) -> states``: the per-row sequence part, computed once per
  sequence (the LSTM's state at the last token; the GBDT's generic seq features);
- ``logits(x_tab, states)``: the rest, run on many perturbed tabular rows;
- ``probability(logits)``: the click probability on the real base rate.

Two sources: a model folder in the file store (``model.pt`` or ``model.txt`` beside
``preprocess.json``, whose ``kind`` says which) via ``load_ctr_model``, or an MLflow
model URI (``models:/<name>/<version>``, ``models:/<name>@champion``, ``models:/m-...``,
``runs:/...``) via ``load_ctr_model_uri``, which downloads the logged model through the
tracking store and loads it with its MLflow flavor (pytorch or lightgbm); the
preprocessing travels in the MLmodel's ``metadata`` (``ctrops.preprocess``), so the
logged model is complete on its own. MLflow and LightGBM are imported only when a model
of that source or kind is loaded, and torch when an LSTM is: importing this module costs neither.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .ctr_metrics import correct_probability
from .preprocess import Preprocess

PREPROCESS_FILE = "preprocess.json"
METADATA_KEY = "ctrops"  # MLmodel metadata: {"ctrops": {"kind": ..., "preprocess": {...}}}
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)/?$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")


class ModelLoadError(Exception):
    """The model cannot be loaded; the message says why, for a person."""


def preprocess_from_dict(values: dict[str, Any]) -> Preprocess:
    """A ``Preprocess`` from its JSON form, ignoring keys this version does not know."""
    known = {f.name for f in fields(Preprocess)}
    return Preprocess(**{k: v for k, v in values.items() if k in known})


def model_kind(preprocess: Preprocess | dict[str, Any]) -> str:
    kind = preprocess.get("kind") if isinstance(preprocess, dict) else getattr(preprocess, "kind", None)
    return kind or "lstm"  # models saved before the GBDT challenger existed are LSTMs


@dataclass
class LoadedModel:
    """One loaded model and where it came from. Use ``encode``/``logits``/``probability``."""

    kind: str  # "lstm" | "gbdt"
    preprocess: Preprocess
    model: Any  # TabularSeqModel (eval mode, CPU) or ctrops_common.gbdt.GbdtModel
    uri: str | None = None  # the MLflow model URI it was loaded from (None: a file-store folder)
    version: int | None = None  # the registered model version, when the URI names one
    batch_rows: int = 8192

    @property
    def state_size(self) -> int:
        """Width of ``encode``'s output."""
        if self.kind == "gbdt":
            return len(self.model.seq_feature_names)
        return int(getattr(self.model, "state_size", self.model.lstm.hidden_size))  # LSTM state (+ recent pool)

    def encode(self, seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(n, L) right-padded tokens already divided by ``preprocess.seq_scale``, (n,) lengths -> (n, S)."""
        if self.kind == "gbdt":
            scale = float(self.preprocess.seq_scale or 1.0)
            tokens = np.asarray(seq, dtype=np.float64) * scale if scale != 1.0 else np.asarray(seq)
            if len(lengths) == 0:
                return np.zeros((0, self.state_size), dtype=np.float32)
            return np.asarray(self.model.encode_seq(tokens, np.asarray(lengths, dtype=np.int64)), dtype=np.float32)
        return self._encode_lstm(seq, lengths)

    def logits(self, x_tab: np.ndarray, states: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """(n, F) filled float32 tabular rows and their (n, S) states -> (n,) float64 logits.
        ``threads``: the LightGBM model's prediction threads for this call (the LSTM's are torch's)."""
        if self.kind == "gbdt":
            if len(x_tab) == 0:
                return np.zeros(0)
            return np.asarray(self.model.logits(np.asarray(x_tab, dtype=np.float32), states, threads),
                              dtype=np.float64)
        return self._logits_lstm(x_tab, states)

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Click probability on the real base rate (the model may have trained on down-sampled data)."""
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
        return correct_probability(p, self.preprocess.train_rate, self.preprocess.base_rate)

    def _encode_lstm(self, seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        import torch

        states = []
        with torch.inference_mode():
            for start in range(0, len(lengths), self.batch_rows):
                stop = start + self.batch_rows
                chunk_len = lengths[start:stop]
                width = max(int(chunk_len.max()), 1)  # no work on padding past the longest
                states.append(self.model.encode_seq(
                    torch.from_numpy(np.ascontiguousarray(seq[start:stop, :width])),
                    torch.from_numpy(np.asarray(chunk_len, dtype=np.int64)),
                ).numpy())
        if not states:
            return np.zeros((0, self.state_size), dtype=np.float32)
        return np.concatenate(states)

    def _logits_lstm(self, x_tab: np.ndarray, states: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(x_tab), self.batch_rows):
                stop = start + self.batch_rows
                out.append(self.model.head(
                    torch.from_numpy(np.ascontiguousarray(x_tab[start:stop], dtype=np.float32)),
                    torch.from_numpy(np.ascontiguousarray(states[start:stop], dtype=np.float32)),
                ).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros(0)


def load_ctr_model(folder: Path) -> LoadedModel:
    """A model folder of the file store (``runs/<run_id>/model/<kind>/``, or an older run's ``model/``)."""
    folder = Path(folder)
    path = folder / PREPROCESS_FILE
    if not path.exists():
        raise ModelLoadError(f"no {PREPROCESS_FILE} in {folder}")
    kind = model_kind(json.loads(path.read_text()))
    if kind == "gbdt":
        from .gbdt import GbdtModel

        gbdt = GbdtModel.load(folder)
        return LoadedModel("gbdt", gbdt.preprocess, gbdt)
    if kind == "lstm":
        from .ml import load_model

        model, preprocess = load_model(folder)
        return LoadedModel("lstm", preprocess, model.eval())
    raise ModelLoadError(f"{path} names an unknown model kind {kind!r} (lstm or gbdt expected)")


def load_ctr_model_uri(uri: str, tracking_uri: str | None) -> LoadedModel:
    """Load a logged or registered model through the MLflow tracking store (blocking: seconds)."""
    import mlflow
    from mlflow.models import Model

    if tracking_uri:
        # Some of MLflow's model-URI paths (models:/ downloads) read the process-wide registry URI
        # rather than the one passed in; unset, that is ./mlflow.db in the working directory.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    version = _registered_version(uri, tracking_uri)
    source = uri
    alias = _ALIAS_URI.match(uri)
    if alias:  # download the version the alias named a moment ago, even if it moves meanwhile
        source = f"models:/{alias['name']}/{version}"
    with tempfile.TemporaryDirectory(prefix="ctrops-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri,
                                                    registry_uri=tracking_uri)
        mlmodel = Model.load(local)
        meta = (mlmodel.metadata or {}).get(METADATA_KEY)
        if not meta or "preprocess" not in meta:
            raise ModelLoadError(f"{uri} was not logged by this project's trainer (no '{METADATA_KEY}' metadata)")
        preprocess_values = meta["preprocess"]
        if isinstance(preprocess_values, str):
            preprocess_values = json.loads(preprocess_values)
        kind = meta.get("kind") or model_kind(preprocess_values)
        if kind == "lstm" and "pytorch" in mlmodel.flavors:
            import mlflow.pytorch

            wrapped = mlflow.pytorch.load_model(local, map_location="cpu")
            model = getattr(wrapped, "model", wrapped).eval()  # LstmPyfunc -> its TabularSeqModel
            return LoadedModel("lstm", preprocess_from_dict(preprocess_values), model, uri=uri, version=version)
        if kind == "gbdt" and "lightgbm" in mlmodel.flavors:
            import mlflow.lightgbm

            from .gbdt import GbdtModel

            booster = mlflow.lightgbm.load_model(local)
            # GbdtModel's own folder layout, rebuilt from the flavor's booster and the metadata.
            folder = Path(tmp) / "ctrops-gbdt"
            folder.mkdir()
            booster.save_model(str(folder / "model.txt"))
            (folder / PREPROCESS_FILE).write_text(json.dumps(preprocess_values))
            gbdt = GbdtModel.load(folder)
            return LoadedModel("gbdt", gbdt.preprocess, gbdt, uri=uri, version=version)
        raise ModelLoadError(f"{uri}: a {kind!r} model with flavors {sorted(mlmodel.flavors)} cannot be loaded here")


def _registered_version(uri: str, tracking_uri: str | None) -> int | None:
    """The version a ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` URI names."""
    match = _VERSION_URI.match(uri)
    if match:
        return int(match["version"])
    match = _ALIAS_URI.match(uri)
    if match:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        return int(client.get_model_version_by_alias(match["name"], match["alias"]).version)
    return None

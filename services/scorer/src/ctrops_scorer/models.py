"""Which model of a run to use, and the loaded models kept in memory.

A run trained an LSTM+MLP and (since the challenger) a LightGBM, each in its own folder of the
file store (``TrainingDone.models[].model_location``); ``TrainingDone.champion`` says which one
won. Runs from before the challenger have one folder, ``TrainingDone.model_location``.

``ModelCache`` loads a model once per (run, kind), in a worker thread (never on the event loop);
concurrent requests for a model being loaded share that one load. The pinned model (the
champion) is never evicted; the others are kept least-recently-used up to ``capacity``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ctrops_common.events import ModelResult, TrainingDone
from ctrops_common.model_loading import LoadedModel, ModelLoadError, load_ctr_model
from ctrops_common.storage import FileStore, UnsafePath

from .compiled import attach, attach_in_background

log = logging.getLogger(__name__)

LABELS = {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}


class NoSuchModel(Exception):
    """The run has no model of the kind asked for (a 404 for a person)."""


@dataclass(frozen=True)
class ModelChoice:
    run_id: str
    kind: str  # "lstm" | "gbdt"
    location: str  # the model folder in the file store
    label: str
    result: ModelResult | None  # the run's numbers for that model (None for runs before the challenger)

    @property
    def key(self) -> tuple[str, str]:
        return self.run_id, self.kind


def choose_model(done: TrainingDone, model: str = "champion") -> ModelChoice:
    """``model`` is "champion" (the run's champion kind), "lstm" or "gbdt"."""
    kind = done.champion if model == "champion" else model
    if kind not in LABELS:
        raise NoSuchModel(f"unknown model {model!r}: use champion, lstm or gbdt")
    for result in done.models:
        if result.kind == kind:
            return ModelChoice(done.run_id, kind, result.model_location.rstrip("/"), result.label or LABELS[kind],
                               result)
    if not done.models and kind == done.champion:  # a run from before the challenger: one model
        return ModelChoice(done.run_id, kind, done.model_location.rstrip("/"), LABELS[kind], None)
    raise NoSuchModel(f"run {done.run_id} has no {LABELS[kind]} ({kind}) model; it trained "
                      + (", ".join(r.kind for r in done.models) or done.champion))


def load_model(store: FileStore, location: str, *, gbdt_threads: int = 1, forward_rows: int = 512,
               compile_trees: str = "off", torch_threads: int = 1) -> LoadedModel:
    """A model folder of the file store -> ``LoadedModel`` (blocking: call in a thread).

    ``torch_threads`` (an LSTM): torch's intra-op threads, set with each LSTM loaded, before it is
    returned to score with: torch is imported by the first (a scorer that never serves an LSTM never
    imports it).
    ``compile_trees`` (a LightGBM model): "background" serves on LightGBM at once and switches to
    the compiled forest once it is checked (``compiled.attach``), "wait" returns only after that
    attempt, "off" keeps LightGBM."""
    try:
        folder = store.path(location)
    except UnsafePath as exc:
        raise ModelLoadError(f"refusing an unsafe store location: {exc}") from None
    if not (folder / "preprocess.json").exists():
        raise NoSuchModel(f"no saved model at {location} (preprocess.json expected)")
    loaded = load_ctr_model(folder)
    loaded.batch_rows = forward_rows
    if loaded.kind == "lstm":
        import torch

        torch.set_num_threads(torch_threads)
    if loaded.kind == "gbdt":
        loaded.model.threads = gbdt_threads
        if compile_trees != "off":
            model_file, cache_dir = folder / "model.txt", compiled_cache_dir(store)
            if compile_trees == "wait":
                attach(loaded.model, model_file, cache_dir)
            else:
                attach_in_background(loaded.model, model_file, cache_dir)
    return loaded


def compiled_cache_dir(store: FileStore) -> Path:
    """Where compiled forests are kept: derived data, safe to delete (keyed by model, compiler and CPU)."""
    return store.root / "cache" / "compiled-forests"


class ModelCache:
    def __init__(self, store: FileStore, *, capacity: int = 4, gbdt_threads: int = 1, forward_rows: int = 512,
                 compile_trees: str = "off", torch_threads: int = 1) -> None:
        self.store = store
        self.capacity = capacity
        self.options = {"gbdt_threads": gbdt_threads, "forward_rows": forward_rows, "compile_trees": compile_trees,
                        "torch_threads": torch_threads}
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Task[LoadedModel]] = {}
        self.pinned: tuple[str, str] | None = None

    def get(self, choice: ModelChoice) -> LoadedModel | None:
        model = self._models.get(choice.key)
        if model is not None:
            self._models.move_to_end(choice.key)
        return model

    def is_loading(self, choice: ModelChoice) -> bool:
        return choice.key in self._loading

    def start_load(self, choice: ModelChoice) -> asyncio.Task[LoadedModel]:
        """The load of ``choice`` (one per model, however many ask); finished at once when cached."""
        task = self._loading.get(choice.key)
        if task is None:
            task = asyncio.ensure_future(self._load(choice))
            self._loading[choice.key] = task
        return task

    async def load(self, choice: ModelChoice) -> LoadedModel:
        cached = self.get(choice)
        if cached is not None:
            return cached
        return await asyncio.shield(self.start_load(choice))

    async def pin(self, choice: ModelChoice) -> LoadedModel:
        """Load ``choice`` and keep it loaded (the champion); the previous pin becomes evictable."""
        self.pinned = choice.key
        model = await self.load(choice)
        self._evict()
        return model

    async def _load(self, choice: ModelChoice) -> LoadedModel:
        try:
            model = await asyncio.to_thread(load_model, self.store, choice.location, **self.options)
            if model.kind != choice.kind:
                raise ModelLoadError(f"{choice.location} holds a {model.kind} model, not {choice.kind}")
            self._models[choice.key] = model
            self._models.move_to_end(choice.key)
            self._evict()
            log.info("loaded the %s model of run %s from %s", choice.kind, choice.run_id, choice.location)
            return model
        finally:
            self._loading.pop(choice.key, None)

    def _evict(self) -> None:
        while len(self._models) > self.capacity:
            victim = next((k for k in self._models if k != self.pinned), None)
            if victim is None:
                return
            del self._models[victim]

    def loaded_keys(self) -> list[tuple[str, str]]:
        return list(self._models)

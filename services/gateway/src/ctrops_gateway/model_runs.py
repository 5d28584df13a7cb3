"""Which trained model a request means, read from the read model as typed ``TrainingDone`` payloads.

- a run id (32 hex): that run, once it completed;
- ``latest``: the newest completed run;
- ``champion``: the newest completed run whose champion became the platform's champion
  (``TrainingDone.promoted``: every ordinary run, a retrain only when it was not worse);
- the champion's *line*: the champion, the run it replaced, the run that one replaced, ...
  (``TrainingDone.replaces``): the deployed model's life across retrains.
"""

from __future__ import annotations

from ctrops_common.events import ModelKind, ScoringModelChoice, Topic, TrainingDone
from ctrops_common.storage import is_id

from .views import ReadModel

ALIASES = ("latest", "champion")
RUNS_SCANNED = 1000  # completed runs looked at for the champion (newest first)
LINE_MAX = 100  # runs followed back through ``replaces``


def is_run_ref(ref: str) -> bool:
    return ref in ALIASES or is_id(ref)


def completed_runs(views: ReadModel, limit: int = RUNS_SCANNED) -> list[TrainingDone]:
    """Completed runs, newest first, one per run (a re-published ``training.done`` counts once)."""
    seen: set[str] = set()
    runs: list[TrainingDone] = []
    for stored in views.events(Topic.TRAINING_DONE, newest_first=True, limit=limit):
        done = stored.typed(TrainingDone)
        if done.run_id not in seen:
            seen.add(done.run_id)
            runs.append(done)
    return runs


def done_of(views: ReadModel, run_id: str) -> TrainingDone | None:
    if not is_id(run_id):
        return None
    stored = views.latest(Topic.TRAINING_DONE, correlation_id=run_id)
    return stored.typed(TrainingDone) if stored is not None else None


def champion(views: ReadModel) -> TrainingDone | None:
    return next((d for d in completed_runs(views) if d.promoted), None)


def resolve_completed(views: ReadModel, ref: str) -> TrainingDone | None:
    """``latest``, ``champion`` or a run id -> that completed run (None: unknown or not finished)."""
    if ref == "latest":
        stored = views.latest(Topic.TRAINING_DONE)
        return stored.typed(TrainingDone) if stored is not None else None
    if ref == "champion":
        return champion(views)
    return done_of(views, ref)


def champion_line(views: ReadModel) -> list[TrainingDone]:
    """The champion first, then each run it replaced in turn."""
    current = champion(views)
    line: list[TrainingDone] = []
    seen: set[str] = set()
    while current is not None and current.run_id not in seen and len(line) < LINE_MAX:
        line.append(current)
        seen.add(current.run_id)
        current = done_of(views, current.replaces) if current.replaces else None
    return line


def model_kinds(done: TrainingDone) -> list[ModelKind]:
    """The kinds of model the run saved (runs from before the challenger: only their champion)."""
    return [m.kind for m in done.models] or [done.champion]


def kind_for(done: TrainingDone, choice: ScoringModelChoice) -> ModelKind | None:
    """The model a choice means for this run, or None when the run has no such model."""
    if choice == "champion":
        return done.champion
    return choice if choice in model_kinds(done) else None


def validation_metrics(done: TrainingDone, kind: ModelKind) -> dict[str, float | None]:
    """The model's numbers on its validation rows at training time (the reference a period is held against)."""
    model = next((m for m in done.models if m.kind == kind), None)
    metrics = model.metrics if model is not None else (done.metrics if kind == done.champion else None)
    if metrics is None:
        return {"accuracy": None, "f1": None, "logloss": None, "auc": None}
    return {"accuracy": metrics.val_accuracy, "f1": metrics.f1,
            "logloss": metrics.logloss if metrics.logloss is not None else metrics.val_loss, "auc": metrics.auc}

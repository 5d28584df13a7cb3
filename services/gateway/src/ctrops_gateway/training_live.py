"""Training runs as the gateway sees them, and their live channel ``training:<run_id>``.

Everything here is built from the ``training.*`` events in the read model (the trainer
publishes them with the run id as correlation id, docs/events.md):

- ``run_view``: one run's status, epochs of its latest attempt, final event;
- ``list_runs``: every run, newest first, for GET /api/train/runs;
- fan-out (``FAN_OUT``, wired into the consumer by ``create_app``): each fresh event becomes WebSocket
  messages on the run's hub channel;
- ``serve``: WS /ws/training/{run_id}. On connect: a Korean ``log`` with the status, one
  ``epoch_update`` per finished epoch of the latest attempt, and the final
  ``training_complete`` / ``training_failed`` if the run ended; then the live messages.
  The client subscribes before the history is read, so nothing falls in between;
  messages it already got are recognised by event id and not sent twice.

A retried run (its training process or its trainer died; the trainer starts attempt n):
the ``training.started`` of attempt n becomes a Korean ``log`` saying so (attempt n of the
maximum, and why); the new attempt trains from epoch 1 again, and its epochs a client has
already seen (numbers not beyond the last epoch it was sent) are not sent again: the
epoch numbers a client sees never go backwards. One ``log`` says where the stream picks up
(``_Sent``). ``epoch_update`` carries ``attempt``; the status shows ``attempt``,
``max_attempts`` and the retry's cause.

Metrics go out with both key spellings (``train_loss`` and ``trainLoss``...), accuracies
as fractions, never NaN (unknown values are null).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy import select

from ctrops_common.events import (
    ModelMetrics,
    Event,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
)
from ctrops_common.model_metrics import spellings
from ctrops_common.numbers import finite
from ctrops_common.storage import is_id

from .state import GatewayState
from .views import RUN_TOPICS, ReadModel, StoredEvent, event_log

CHANNEL_PREFIX = "training:"
STATUS_KO = {"training": "학습 중", "completed": "완료", "failed": "실패"}
# Why a run is retried (training.started's retry_cause), in words for the client.
RETRY_CAUSE_KO = {
    "died": "이전 시도의 학습 프로세스가 비정상 종료되었습니다 (강제 종료 또는 메모리 부족)",
    "interrupted": "이전 시도가 중단되었습니다 (트레이너 중지 또는 브로커 연결 오류)",
    "lease_expired": "이전 시도의 트레이너가 응답하지 않습니다 (강제 종료 또는 재시작)",
    "": "이전 시도가 중단되었습니다",
}
# The status contract's four metrics: numbers (0 until the first epoch finishes), never null.
BASE_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def channel(run_id: str) -> str:
    return CHANNEL_PREFIX + run_id


def metrics_both(metrics: ModelMetrics | None) -> dict[str, Any]:
    """Every metric, JSON-safe, under every spelling the frontend reads (ModelMetrics.both_spellings);
    empty before the first epoch."""
    return metrics.both_spellings() if metrics is not None else {}


MODEL_KO = {"lstm": "LSTM+MLP", "gbdt": "LightGBM(그래디언트 부스팅)"}


def models_body(done: TrainingDone) -> dict[str, Any]:
    """What a finished run says about its models: the champion, each model's numbers, their comparison,
    and the batch size the LSTM used beside the one asked for. Empty for runs from before the challenger."""
    if not done.models:
        return {}
    comparison = done.comparison.model_dump(mode="json") if done.comparison is not None else {}
    body: dict[str, Any] = {
        "champion": done.champion,
        "champion_label": next((m.label for m in done.models if m.kind == done.champion), None),
        "models": [{**m.model_dump(mode="json", exclude={"metrics"}), "metrics": metrics_both(m.metrics)}
                   for m in done.models],
        "comparison": {k: finite(v) if isinstance(v, float) else v for k, v in comparison.items()} or None,
    }
    if done.batch is not None:
        body["batch"] = done.batch.model_dump(mode="json")
    if done.model_uri:
        body.update(model_uri=done.model_uri, registered_model=done.registered_model,
                    registered_version=done.registered_version)
    body["championLabel"] = body["champion_label"]
    return body


# -- the read side ---------------------------------------------------------------------------------------


@dataclass
class RunView:
    run_id: str
    requested: StoredEvent | None = None
    started: StoredEvent | None = None  # of the latest attempt
    epochs: list[StoredEvent] = field(default_factory=list)  # latest attempt, in epoch order
    done: StoredEvent | None = None
    failed: StoredEvent | None = None
    cancel_requested: bool = False

    # The typed payloads (the events above keep their ids and times).
    @property
    def start(self) -> TrainingStarted | None:
        return self.started.typed(TrainingStarted) if self.started is not None else None

    @property
    def request(self) -> TrainingRequested | None:
        return self.requested.typed(TrainingRequested) if self.requested is not None else None

    @property
    def finished(self) -> TrainingDone | None:
        return self.done.typed(TrainingDone) if self.done is not None else None

    @property
    def failure(self) -> TrainingFailed | None:
        return self.failed.typed(TrainingFailed) if self.failed is not None else None

    def epoch(self, index: int) -> TrainingProgress:
        return self.epochs[index].typed(TrainingProgress)

    @property
    def attempt(self) -> int:
        if self.start is not None:
            return self.start.attempt
        return self.epoch(-1).attempt if self.epochs else 0

    @property
    def max_attempts(self) -> int | None:
        return self.start.max_attempts if self.start is not None else None

    @property
    def retry(self) -> dict[str, Any] | None:
        """Why the latest attempt is a retry (None for the first attempt or unknown)."""
        start = self.start
        if start is None or start.attempt <= 1:
            return None
        return {"cause": start.retry_cause, "reason": start.retry_reason,
                "reason_ko": RETRY_CAUSE_KO.get(start.retry_cause or "", RETRY_CAUSE_KO[""])}

    @property
    def status(self) -> str:
        if self.done is not None:
            return "completed"
        return "failed" if self.failed is not None else "training"

    @property
    def config(self) -> TrainingConfig | None:
        if self.request is not None:
            return self.request.config
        return self.finished.config if self.finished is not None else None

    @property
    def total_epochs(self) -> int:
        if self.epochs:
            return self.epoch(-1).total_epochs
        return self.config.epochs if self.config is not None else 0

    @property
    def current_epoch(self) -> int:
        if self.finished is not None:
            return self.finished.epochs_run
        return self.epoch(-1).epoch if self.epochs else 0

    @property
    def file_id(self) -> str | None:
        for payload in (self.request, self.finished):
            if payload is not None and payload.file_id:
                return payload.file_id
        return None

    @property
    def created_at(self) -> datetime | None:
        first = self.requested or self.started or (self.epochs[0] if self.epochs else None) or self.done or self.failed
        return first.time if first is not None else None

    def latest_metrics(self) -> ModelMetrics | None:
        """The kept (best) epoch's metrics once completed, else the latest finished epoch's."""
        if self.finished is not None:
            return self.finished.metrics
        return self.epoch(-1).metrics if self.epochs else None


def build_view(run_id: str, events: list[StoredEvent]) -> RunView | None:
    """Fold one run's events (oldest first) into its view; None if there are none."""
    if not events:
        return None
    view = RunView(run_id)
    progress: dict[tuple[int, int], StoredEvent] = {}
    for event in events:
        topic = event.topic
        if topic == Topic.TRAINING_REQUESTED.value:
            view.requested = view.requested or event
        elif topic == Topic.TRAINING_STARTED.value:
            view.started = event
        elif topic == Topic.TRAINING_PROGRESS.value:
            epoch = event.typed(TrainingProgress)
            key = (epoch.attempt, epoch.epoch)
            progress.setdefault(key, event)  # one per epoch, even if an event was published twice
        elif topic == Topic.TRAINING_DONE.value:
            view.done = view.done or event  # a re-published done repeats the first
        elif topic == Topic.TRAINING_FAILED.value:
            view.failed = view.failed or event
        elif topic == Topic.TRAINING_CANCEL_REQUESTED.value:
            view.cancel_requested = True
    if view.requested is None and view.started is None and not progress and view.done is None \
            and view.failed is None:
        return None  # only a cancel request for an id nobody trained
    if progress:
        last_attempt = max(a for a, _ in progress)
        if view.started is not None:
            last_attempt = max(last_attempt, view.attempt)
        view.epochs = [progress[k] for k in sorted(progress) if k[0] == last_attempt]
    return view


def run_view(views: ReadModel, run_id: str) -> RunView | None:
    if not is_id(run_id):
        return None
    return build_view(run_id, views.run_events(run_id))


def cached_view(views: ReadModel, run_id: str) -> RunView | None:
    """The run's view from memory only (no database, safe on the event loop); None when not there."""
    events = views.cached_run_events(run_id)
    return build_view(run_id, events) if events else None


def find_view(views: ReadModel, run_id: str) -> RunView | None:
    """``latest`` or a run id -> its view, None when unknown (reads the database when needed)."""
    resolved = resolve_run_id(views, run_id)
    return run_view(views, resolved) if resolved else None


def resolve_run_id(views: ReadModel, run_id: str) -> str | None:
    """``latest`` -> the newest completed run; a known run id -> itself; otherwise None."""
    if run_id == "latest":
        done = views.latest(Topic.TRAINING_DONE)
        return done.typed(TrainingDone).run_id if done is not None else None
    return run_id if run_view(views, run_id) is not None else None


def status_body(view: RunView) -> dict[str, Any]:
    metrics = metrics_both(view.latest_metrics())
    described = ModelMetrics.described()
    for name in BASE_METRICS:  # the contract's four are numbers: 0 until the first epoch finishes
        for key in spellings(name, described[name]):
            if metrics.get(key) is None:
                metrics[key] = 0.0
    body: dict[str, Any] = {
        "run_id": view.run_id,
        "status": view.status,
        "current_epoch": view.current_epoch,
        "total_epochs": view.total_epochs,
        "metrics": metrics,
        "file_id": view.file_id,
        "created_at": view.created_at.isoformat() if view.created_at else None,
        "attempt": view.attempt,
        "max_attempts": view.max_attempts,
        "retry": view.retry,  # why the latest attempt is a retry (null for the first)
        "experiment_name": view.config.experiment_name if view.config is not None else None,
        "config": view.config.model_dump(mode="json") if view.config is not None else {},
        "history": [{"epoch": p.epoch, **metrics_both(p.metrics)}
                    for p in (e.typed(TrainingProgress) for e in view.epochs)],
    }
    replaces = view.request.replaces if view.request is not None else None
    if replaces or (view.finished is not None and view.finished.replaces):
        body["replaces"] = replaces or view.finished.replaces  # a retrain: the run it replaces
    batch = next((p.batch for p in (e.typed(TrainingProgress) for e in view.epochs) if p.batch), None)
    if batch is not None:
        body["batch"] = batch.model_dump(mode="json")  # the batch size the LSTM uses, beside the one asked for, and why
    if view.done is not None:
        done = view.done.typed(TrainingDone)
        body.update(best_epoch=done.best_epoch, epochs_run=done.epochs_run,
                    duration_s=finite(done.duration_s), model_location=done.model_location,
                    mlflow_run_id=done.mlflow_run_id, completed_at=view.done.time.isoformat(),
                    # Whether its champion became the platform's champion (a retrain only when not worse).
                    promoted=done.promoted,
                    promotion=done.promotion.model_dump(mode="json") if done.promotion is not None else None,
                    **models_body(done))
    elif view.failed is not None:
        failure = view.failed.typed(TrainingFailed)
        body.update(error=failure.reason, cancelled=failure.cancelled, failed_at=view.failed.time.isoformat())
    else:
        body["cancel_requested"] = view.cancel_requested
    return body


def list_runs(views: ReadModel, limit: int = 500) -> list[dict[str, Any]]:
    """Every requested run, newest first: run_id, created_at, status, accuracy (fraction), file_id."""
    requested = views.events(Topic.TRAINING_REQUESTED, newest_first=True, limit=limit)
    ids = list(dict.fromkeys(e.correlation_id for e in requested if e.correlation_id))
    if not ids:
        return []
    by_run: dict[str, list[StoredEvent]] = {run_id: [] for run_id in ids}
    query = (select(event_log).where(event_log.c.topic.in_([t.value for t in RUN_TOPICS]),
                                     event_log.c.correlation_id.in_(ids))
             .order_by(event_log.c.seq))
    with views.engine.connect() as conn:
        for row in conn.execute(query):
            by_run[row.correlation_id].append(StoredEvent(row))
    runs = []
    for run_id in ids:
        view = build_view(run_id, by_run[run_id])
        if view is None:
            continue
        metrics = view.latest_metrics()
        runs.append({
            "run_id": run_id,
            "created_at": view.created_at.isoformat() if view.created_at else None,
            "status": view.status,
            "accuracy": finite(metrics.val_accuracy) if metrics is not None else None,
            "file_id": view.file_id,
            "auc": finite(metrics.auc) if metrics is not None else None,
            "current_epoch": view.current_epoch,
            "total_epochs": view.total_epochs,
            "attempt": view.attempt,
            "experiment_name": view.config.experiment_name if view.config is not None else None,
            "champion": view.finished.champion if view.finished is not None else None,
        })
    return runs


# -- messages -----------------------------------------------------------------------------------------------


def log_message(text: str) -> dict[str, Any]:
    return {"type": "log", "message": text}


def unknown_run_message(run_id: str) -> dict[str, Any]:
    shown = json.dumps(run_id[:80], ensure_ascii=False)
    if run_id == "latest":
        return log_message("아직 완료된 학습 실행이 없습니다. (No training run has completed yet.)")
    return log_message(f"알 수 없는 학습 실행입니다: {shown} (Unknown training run: {shown})")


def status_message(view: RunView) -> dict[str, Any]:
    text = f"학습 실행 {view.run_id[:8]} 상태: {STATUS_KO[view.status]}"
    if view.status == "training":
        text += f" (에폭 {view.current_epoch}/{view.total_epochs} 완료"
        if view.attempt > 1:
            text += f", 시도 {view.attempt}" + (f"/{view.max_attempts}" if view.max_attempts else "")
        text += ")"
        if view.cancel_requested:
            text += ", 취소 요청됨"
    elif view.status == "completed":
        text += f" (에폭 {view.current_epoch}/{view.total_epochs})"
    else:
        text += f": {view.failure.reason}" if view.failure is not None else ""
    return log_message(text)


def epoch_message(progress: TrainingProgress) -> dict[str, Any]:
    return {
        "type": "epoch_update",
        "epoch": progress.epoch,
        "total_epochs": progress.total_epochs,
        "metrics": metrics_both(progress.metrics),
        "attempt": progress.attempt,
    }


def epoch_log(progress: TrainingProgress) -> dict[str, Any]:
    m = progress.metrics
    auc, val_loss = finite(m.auc), finite(m.val_loss)
    parts = [f"에폭 {progress.epoch}/{progress.total_epochs} 완료"]
    if auc is not None:
        parts.append(f"검증 AUC {auc:.3f}")
    if val_loss is not None:
        parts.append(f"검증 손실 {val_loss:.4f}")
    return log_message(" - ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0])


def challenger_log(done: TrainingDone) -> dict[str, Any] | None:
    """The challenger's result and the champion, in words (None for runs from before the challenger)."""
    by_kind = {m.kind: m for m in done.models}
    if "gbdt" not in by_kind or "lstm" not in by_kind:
        return None
    auc = {k: finite(m.metrics.auc) for k, m in by_kind.items()}
    champion = done.champion
    text = "도전 모델 LightGBM 학습 완료"
    if auc["gbdt"] is not None:
        text += f": 검증 AUC {auc['gbdt']:.3f}"
    if auc["lstm"] is not None:
        text += f" (LSTM+MLP {auc['lstm']:.3f})"
    comparison = done.comparison
    p_value = finite(comparison.p_value) if comparison is not None else None
    if comparison is not None and p_value is not None:
        diff = finite(comparison.difference) or 0.0
        lo, hi = finite(comparison.ci_low), finite(comparison.ci_high)
        text += f". AUC 차이 {diff:+.3f}"
        if lo is not None and hi is not None:
            text += f" (95% 신뢰구간 {lo:+.3f}~{hi:+.3f}"
        text += f", DeLong p={p_value:.3g})" if lo is not None and hi is not None else f", DeLong p={p_value:.3g}"
    text += f". 챔피언 모델: {MODEL_KO.get(champion, champion)}"
    if p_value is not None and p_value >= 0.05:
        text += " (두 모델의 차이는 통계적으로 유의하지 않습니다)"
    return log_message(text + ".")


def complete_messages(done: TrainingDone) -> list[dict[str, Any]]:
    metrics = metrics_both(done.metrics)
    auc = metrics.get("auc")
    models = models_body(done)
    text = f"학습이 완료되었습니다. 최고 에폭 {done.best_epoch}/{done.epochs_run}"
    if models:
        text = f"학습이 완료되었습니다. 챔피언 {MODEL_KO.get(models['champion'], models['champion'])}"
    if auc is not None:
        text += f", 검증 AUC {auc:.3f}"
    challenger = challenger_log(done)
    return [
        *([challenger] if challenger is not None else []),
        log_message(text),
        {"type": "training_complete", "metrics": metrics, "run_id": done.run_id,
         "best_epoch": done.best_epoch, "epochs_run": done.epochs_run,
         "model_location": done.model_location, **models},
    ]


def epoch_messages(progress: TrainingProgress) -> list[dict[str, Any]]:
    """An epoch's update, with the batch-size note on the first epoch when there is one."""
    batch = batch_log(progress)
    return [epoch_message(progress), *([batch] if batch is not None else [])]


def batch_log(progress: TrainingProgress) -> dict[str, Any] | None:
    """Said once, with the first epoch: the batch size used when it differs from the one asked for."""
    batch = progress.batch
    if progress.epoch != 1 or batch is None or not batch.reason:
        return None
    return log_message(
        f"배치 크기: 요청 {batch.requested}, 사용 {batch.used} "
        f"(에폭당 학습 행 {batch.train_rows_per_epoch}개, 에폭당 최적화 단계 {batch.steps_per_epoch}회). "
        f"이유: 요청한 배치로는 에폭당 최적화 단계가 너무 적어 모델이 학습하지 못합니다. ({batch.reason})"
    )


def failed_messages(failed: TrainingFailed) -> list[dict[str, Any]]:
    reason, cancelled = failed.reason, failed.cancelled
    text = "학습이 취소되었습니다." if cancelled else f"학습에 실패했습니다: {reason}"
    return [log_message(text), {"type": "training_failed", "error": reason, "cancelled": cancelled}]


def started_message(started: TrainingStarted) -> dict[str, Any]:
    attempt = started.attempt
    if attempt <= 1:
        return log_message("학습을 시작했습니다.")
    most = started.max_attempts
    of = f"시도 {attempt}/{most}" if most else f"시도 {attempt}"
    why = RETRY_CAUSE_KO.get(started.retry_cause or "", RETRY_CAUSE_KO[""])
    detail = f" ({started.retry_reason})" if started.retry_reason else ""
    return log_message(f"학습을 다시 시작합니다 ({of}). 이유: {why}{detail}. 새 시도는 에폭 1부터 다시 학습하며, "
                       "이미 받은 에폭은 다시 보내지 않고 그다음 에폭부터 이어서 보냅니다.")


def replay_message(attempt: int, epoch: int, shown: int) -> dict[str, Any]:
    """Said once per attempt, when its first epoch the client already saw comes in."""
    return log_message(f"시도 {attempt}: 에폭 {epoch}부터 다시 학습 중입니다. 이미 받은 에폭 {shown}까지는 다시 보내지 않고, "
                       f"에폭 {shown + 1}부터 이어서 보냅니다.")


def keyed(event_id: str, messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(dedupe key, message): ``<event>:<type>``, numbered from the second message of a type on
    (one event may say two log lines); live fan-out and history use the same keys."""
    seen: dict[str, int] = {}
    out = []
    for message in messages:
        n = seen[message["type"]] = seen.get(message["type"], -1) + 1
        out.append((f"{event_id}:{message['type']}" + (f":{n}" if n else ""), message))
    return out


def history_messages(view: RunView) -> list[tuple[str, dict[str, Any]]]:
    """(dedupe key, message) for a client that just connected."""
    messages: list[tuple[str, dict[str, Any]]] = [("status", status_message(view))]
    if view.started is not None:
        messages.append((f"{view.started.event_id}:log", started_message(view.started.typed(TrainingStarted))))
    for event in view.epochs:  # without the per-epoch log lines (keys as in the live fan-out, which sends them last)
        messages += keyed(event.event_id, epoch_messages(event.typed(TrainingProgress)))
    if view.done is not None:
        messages += keyed(view.done.event_id, complete_messages(view.done.typed(TrainingDone)))
    elif view.failed is not None:
        messages += keyed(view.failed.event_id, failed_messages(view.failed.typed(TrainingFailed)))
    return messages


# -- fan-out: fresh events -> the run's channel ----------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """A message as WebSocket text, exactly as ``WebSocket.send_json`` writes it."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _push(state: GatewayState, event: Event[Any], messages: list[dict[str, Any]], final: bool = False) -> None:
    run_id = event.payload.run_id
    for key, message in keyed(event.event_id, messages):
        # Encoded once here, not once per client: every client that is sent this message as it is
        # gets these same bytes (_Outbox sends them when its screen passes the message unchanged).
        state.hub.publish(channel(run_id), {**message, "_key": key, "_final": final, "_text": encode(message)})


def on_started(state: GatewayState, event: Event[TrainingStarted]) -> None:
    _push(state, event, [started_message(event.payload)])


def on_progress(state: GatewayState, event: Event[TrainingProgress]) -> None:
    _push(state, event, [*epoch_messages(event.payload), epoch_log(event.payload)])


def on_done(state: GatewayState, event: Event[TrainingDone]) -> None:
    _push(state, event, complete_messages(event.payload), final=True)


def on_failed(state: GatewayState, event: Event[TrainingFailed]) -> None:
    _push(state, event, failed_messages(event.payload), final=True)


# What this view pushes for each topic; create_app wires it into the consumer (consumers.fan_out_table).
FAN_OUT = {Topic.TRAINING_STARTED: on_started, Topic.TRAINING_PROGRESS: on_progress,
           Topic.TRAINING_DONE: on_done, Topic.TRAINING_FAILED: on_failed}


# -- the WebSocket -------------------------------------------------------------------------------------------------


class _Sent:
    """What one client already got: by event, by (attempt, epoch), the highest epoch number it was
    sent, and whether the run's end.

    Epoch numbers never go backwards for a client: an ``epoch_update`` not beyond the highest
    epoch sent (a retried attempt training its first epochs again) is counted as seen but not
    sent, nor are that event's other lines (its per-epoch log); the first such epoch of an
    attempt is announced once instead (``replay_message``)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.epochs: set[tuple[int, int]] = set()
        self.shown_epoch = 0
        self.replayed_events: set[str] = set()
        self.announced_attempts: set[int] = set()
        self.final = False

    def screen(self, key: str, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages to send for this one: itself, nothing, or (a replayed epoch) its announcement."""
        event_id = key.split(":", 1)[0]
        if event_id in self.replayed_events and message["type"] == "log":
            self.keys.add(key)  # "epoch 1/10 done" of a replayed epoch would read as going backwards
            return []
        if message["type"] == "epoch_update" and key not in self.keys \
                and int(message["epoch"]) <= self.shown_epoch:
            attempt, epoch = int(message.get("attempt", 1)), int(message["epoch"])
            self.keys.add(key)
            self.epochs.add((attempt, epoch))  # accounted for: the run's end does not wait for it
            self.replayed_events.add(event_id)
            if attempt in self.announced_attempts:
                return []
            self.announced_attempts.add(attempt)
            return [replay_message(attempt, epoch, self.shown_epoch)]
        return [message] if self.admit(key, message) else []

    def admit(self, key: str, message: dict[str, Any]) -> bool:
        if key in self.keys:
            return False
        kind = message["type"]
        if kind == "epoch_update":
            epoch = (message.get("attempt", 1), message["epoch"])
            if epoch in self.epochs:
                return False
            self.epochs.add(epoch)
            self.shown_epoch = max(self.shown_epoch, int(message["epoch"]))
        elif kind in ("training_complete", "training_failed"):
            if self.final:
                return False
            self.final = True
        self.keys.add(key)
        return True


# Longest the end of a run waits for epochs this gateway has not consumed yet (see _Outbox).
FINAL_HOLD_S = 10.0


class _Outbox:
    """Sends each message once, and the run's end (training_complete) only after every epoch it reports.

    Topics are consumed in no global order, so a gateway catching up on a backlog (after a
    restart, say) can consume ``training.done`` before the last ``training.progress`` events.
    The end is then held until those epochs were sent, or FINAL_HOLD_S passed; then the
    epochs the read model has are sent, and the end.
    """

    def __init__(self, websocket: WebSocket, sent: _Sent) -> None:
        self.websocket = websocket
        self.sent = sent
        self.held: list[tuple[str, dict[str, Any], str | None]] = []
        self.deadline: float | None = None

    def wait_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    async def offer(self, key: str, message: dict[str, Any], final: bool = False, text: str | None = None) -> None:
        """``text``: the message already encoded (the fan-out encodes each message once for all clients)."""
        if final:
            self.held.append((key, message, text))
            self.deadline = self.deadline or time.monotonic() + FINAL_HOLD_S
        else:
            await self._send(key, message, text)
        await self.flush()

    async def _send(self, key: str, message: dict[str, Any], text: str | None) -> None:
        for outgoing in self.sent.screen(key, message):
            if outgoing is message and text is not None:
                await self.websocket.send_text(text)
            else:
                await self.websocket.send_json(outgoing)

    async def flush(self, force: bool = False) -> None:
        end = next((m for _, m, _ in self.held if m["type"] in ("training_complete", "training_failed")), None)
        if not self.held or (end is None and not force) or (not force and self._epochs_missing(end)):
            return
        for key, message, text in self.held:
            await self._send(key, message, text)
        self.held, self.deadline = [], None

    async def catch_up(self, views: ReadModel, run_id: str) -> None:
        """The hold expired: send the epochs the read model has, then the end."""
        view = await asyncio.to_thread(run_view, views, run_id)
        for event in view.epochs if view is not None else []:
            await self.offer(f"{event.event_id}:epoch_update", epoch_message(event.typed(TrainingProgress)))
        await self.flush(force=True)

    def _epochs_missing(self, end: dict[str, Any] | None) -> bool:
        expected = end.get("epochs_run") if end is not None and end["type"] == "training_complete" else None
        if not expected:
            return False
        attempt = max((a for a, _ in self.sent.epochs), default=None)
        have = {e for a, e in self.sent.epochs if a == attempt}
        return not set(range(1, int(expected) + 1)) <= have


async def serve(websocket: WebSocket, state: GatewayState, run_id: str) -> None:
    await websocket.accept()
    try:
        resolved = await asyncio.to_thread(resolve_run_id, state.views, run_id)
        if resolved is None:
            await websocket.send_json(unknown_run_message(run_id))
            await _until_disconnect(websocket)  # the contract: the socket stays open
            return
        queue = state.hub.subscribe(channel(resolved))  # before reading history: nothing falls in between
        try:
            view = await asyncio.to_thread(run_view, state.views, resolved)
            out = _Outbox(websocket, _Sent())
            end = (view.done or view.failed) if view is not None else None
            for key, message in history_messages(view) if view is not None else []:
                await out.offer(key, message, final=end is not None and key.startswith(f"{end.event_id}:"))
            listener = asyncio.create_task(_until_disconnect(websocket))
            # The client leaving wakes the loop through its queue: a plain ``await queue.get()`` per
            # message, not a new task and an ``asyncio.wait`` per message and client (1,000 clients of
            # a run are 1,000 wake-ups per message). A full queue is being drained: the check at the
            # top of the loop (or a send to the closed socket) ends it.
            listener.add_done_callback(lambda _: _wake(queue))
            try:
                while True:
                    if listener.done():
                        return
                    wait_s = out.wait_s()
                    if wait_s is None:
                        message = await queue.get()
                    else:
                        try:
                            message = await asyncio.wait_for(queue.get(), wait_s)
                        except TimeoutError:  # the held end waited long enough
                            await out.catch_up(state.views, resolved)
                            continue
                    if message is _GONE:
                        return
                    if message is None:  # the hub dropped this slow client: close; it reconnects for the history
                        await websocket.close(code=1013)
                        return
                    # The same dict went to every client: read it, never change it.
                    outgoing = {k: v for k, v in message.items() if not k.startswith("_")}
                    await out.offer(message.get("_key", ""), outgoing, final=bool(message.get("_final")),
                                    text=message.get("_text"))
            finally:
                listener.cancel()
        finally:
            state.hub.unsubscribe(channel(resolved), queue)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left while we were sending


_GONE: dict[str, Any] = {}  # put in a client's queue when it disconnected


def _wake(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    try:
        queue.put_nowait(_GONE)
    except asyncio.QueueFull:
        pass


async def _until_disconnect(websocket: WebSocket) -> None:
    """Clients send nothing; reading is how a closed socket is noticed."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return

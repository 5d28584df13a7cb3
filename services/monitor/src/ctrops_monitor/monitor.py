"""The monitor's logic: model quality, system health, alert incidents and the latest run's pipeline
stages (their arithmetic is pipeline.py's).

No Kafka here: handlers feed events in and publish what comes out (the alert outbox
and snapshots), so this is tested against a real database without a broker.

Alerts open ONCE per incident and close with a 'resolved' message:
- model_accuracy (subject 'model'): the latest finished run's validation accuracy is
  below the threshold; a later run at or above it resolves the incident. At ~2 %
  positives a constant "no click" model scores ~98 % accuracy, so this alert is the
  contract's check, not the honest one: AUC and AP travel with every alert and snapshot.
- response_time (subject 'gateway'): the gateway's p95 latency is above the threshold.
- error_rate (subject 'gateway'): the share of 5xx API responses in the window is above
  the threshold (with a minimum number of requests).
- service_down (subject: the service): no heartbeat from any instance within the timeout.
- calibration, auc_drop (subject 'model') and feature_drift (subject: the feature): from each
  monitoring.period of the deployed model (model_drift.py decides; a later period in band,
  e.g. after retraining, resolves them; an older period arriving late changes nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ctrops_common.events import (
    AlertEvidence,
    AlertKind,
    ErrorRateEvidence,
    ModelAccuracyEvidence,
    MonitoringPeriod,
    MonitorAlert,
    ActiveAlert,
    ModelMetrics,
    MonitorSnapshot,
    PipelineStage,
    RunRef,
    ServiceError,
    ServiceHealth,
    ResponseTimeEvidence,
    ServiceDownEvidence,
    ServiceHeartbeat,
    SystemHealth,
    Topic,
    TrainingDone,
    TrainingProgress,
)
from ctrops_common.numbers import finite as _finite

from . import metrics as m
from .health import InstanceBeat, TrafficWindow, api_rates, gateway_p95_ms, resource_use, status_of
from .model_drift import Thresholds, assess, auc_drop_limit, is_newer_or_same, top_features
from .pipeline import pipeline_stages
from .settings import MonitorSettings
from .store import MonitorStore, OpenIncident

SEVERITY = {"model_accuracy": "high", "service_down": "high", "error_rate": "high", "response_time": "medium",
            "calibration": "high", "auc_drop": "high", "feature_drift": "medium"}
# Instances silent this many timeouts are stopped replicas: dropped (their service stays watched).
FORGET_AFTER_TIMEOUTS = 10


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Monitor:
    def __init__(self, settings: MonitorSettings, store: MonitorStore, now: datetime | None = None) -> None:
        self.settings = settings
        self.store = store
        self.started_at = now or utcnow()
        self.timeout = timedelta(seconds=settings.monitor_heartbeat_timeout_s)
        self.traffic = TrafficWindow(settings.monitor_traffic_window_s)
        self.instances: dict[tuple[str, str], InstanceBeat] = {}
        self.watched: dict[str, datetime] = {}  # service -> newest heartbeat time
        self.open: dict[tuple[str, str], OpenIncident] = {}  # (kind, subject) -> its firing incident
        self.latest_run: tuple[datetime, TrainingDone] | None = None
        self.errors_seen: list[float] = []  # unix times of recent service.error events
        self._load()

    # -- start-up ------------------------------------------------------------------

    def _load(self) -> None:
        """Resume from the database: open incidents stay open (no re-fire), liveness continues."""
        for incident in self.store.open_alerts():
            alert = incident.alert
            self.open[(alert.kind, alert.subject)] = incident
            m.ALERT_ACTIVE.labels(alert.kind, alert.subject).set(1)
        for service, instance, seen_at, beat in self.store.heartbeats():
            self.instances[(service, instance)] = InstanceBeat(service, instance, seen_at, beat)
        for service, last_seen in self.store.watched_services().items():
            self.watched[service] = datetime.fromtimestamp(last_seen, timezone.utc)
        for service in self.settings.expected_services:
            self.watched.setdefault(service, datetime.fromtimestamp(0, timezone.utc))
        m.init_counters(tuple(SEVERITY), sorted(self.watched))
        stored = self.store.latest_run()
        self.latest_run = None if stored is None else (stored[0], TrainingDone.model_validate(stored[1]))
        if self.latest_run is not None:
            self._export_quality(*self.latest_run)
        self.psi_exported: dict[str, set[str]] = {}  # model kind -> features with a ctrops_feature_psi series
        for payload in self.store.latest_periods():
            self._export_period(MonitoringPeriod.model_validate(payload))

    # -- incidents -------------------------------------------------------------------

    def _condition(
        self, kind: AlertKind, subject: str, bad: bool, now: datetime, fire: str, resolve: str,
        evidence: AlertEvidence, correlation_id: str | None = None,
    ) -> MonitorAlert | None:
        """Open an incident when ``bad`` turns true, resolve it when it turns false; else nothing.
        ``evidence`` (the alert's ``metrics``) is the model of ``kind`` (events.EVIDENCE)."""
        key = (kind, subject)
        current = self.open.get(key)
        if bad and current is None:
            number = self.store.incidents(kind, subject) + 1
            alert = MonitorAlert(
                alert_id=f"{kind}:{subject}:{number}", kind=kind, subject=subject, state="firing",
                severity=SEVERITY[kind], message=fire, metrics=evidence,
            )
            self.store.open_incident(alert, now, self._outgoing(alert, correlation_id))
            self.open[key] = OpenIncident(alert=alert, opened_at=now)
            m.ALERT_ACTIVE.labels(kind, subject).set(1)
            m.ALERTS_FIRED.labels(kind).inc()
            return alert
        if not bad and current is not None:
            alert = MonitorAlert(
                alert_id=current.alert.alert_id, kind=kind, subject=subject, state="resolved",
                severity=current.alert.severity, message=resolve, metrics=evidence,
            )
            self.store.resolve_incident(alert.alert_id, now, self._outgoing(alert, correlation_id))
            del self.open[key]
            m.ALERT_ACTIVE.labels(kind, subject).set(0)
            m.ALERTS_RESOLVED.labels(kind).inc()
            return alert
        return None

    @staticmethod
    def _outgoing(alert: MonitorAlert, correlation_id: str | None) -> dict[str, Any]:
        return {"alert": alert.model_dump(mode="json"), "correlation_id": correlation_id}

    # -- model quality ------------------------------------------------------------------

    def on_training_done(self, done: TrainingDone, at: datetime) -> MonitorAlert | None:
        payload = done.model_dump(mode="json")
        self.store.save_run(done.run_id, at, payload)
        m.TRAINING_RUNS.labels("completed").inc()
        m.TRAINING_DURATION.observe(max(0.0, done.duration_s))
        if self.latest_run is not None and at < self.latest_run[0]:
            return None  # an older run arriving late must not overrule the newer verdict
        self.latest_run = (at, done)
        self._export_quality(at, done)
        quality = done.metrics.values()
        accuracy = quality["val_accuracy"]
        if accuracy is None:
            return None
        threshold = self.settings.monitor_accuracy_threshold
        # The run and its champion's metrics, every spelling the frontend reads (threshold: the run's
        # decision threshold; the accuracy threshold is in the message).
        evidence = ModelAccuracyEvidence(run_id=done.run_id, quality=done.metrics)
        auc = "n/a" if quality["auc"] is None else f"{quality['auc']:.3f}"
        return self._condition(
            "model_accuracy", "model", accuracy < threshold, at,
            fire=(
                f"모델 정확도 {accuracy:.3f}이(가) 임계값 {threshold:.2f} 미만입니다 (run {done.run_id}, AUC {auc}). "
                f"Model accuracy {accuracy:.3f} is below {threshold:.2f}."
            ),
            resolve=(
                f"모델 정확도가 {accuracy:.3f}로 회복되었습니다 (run {done.run_id}). "
                f"Resolved: model accuracy back to {accuracy:.3f}."
            ),
            evidence=evidence, correlation_id=done.run_id,
        )

    def _export_quality(self, at: datetime, done: TrainingDone) -> None:
        m.MODEL_QUALITY.set(done.metrics)
        m.MODEL_LAST_RUN_TIMESTAMP.set(at.timestamp())

    def on_training_failed(self) -> None:
        m.TRAINING_RUNS.labels("failed").inc()

    def on_training_progress(self, progress: TrainingProgress) -> None:
        m.TRAINING_EPOCHS.inc()
        if progress.total_epochs > 0:
            m.TRAINING_PROGRESS.set(min(1.0, progress.epoch / progress.total_epochs))
        values = progress.metrics.values()
        for name, info in m.epoch_metrics().items():
            value = values[name]
            if value is not None:
                gauge = m.TRAINING_EPOCH_LOSS if info.unit == "nats" else m.TRAINING_EPOCH_RATIO
                gauge.labels(name).set(value)

    # -- the pipeline's stages ---------------------------------------------------------------------

    def on_run_event(self, topic: Topic, run_id: str, event_id: str, at: datetime) -> bool:
        """Record when one of a run's pipeline events happened (pipeline.TIMED_TOPICS); True when that
        changed the latest finished run's stages (a snapshot is due), False for another run's event,
        a redelivered one or an older one arriving late."""
        changed = self.store.save_run_event(run_id, topic.value, event_id, at)
        return changed and self.latest_run is not None and self.latest_run[1].run_id == run_id

    def pipeline(self) -> list[PipelineStage]:
        """The latest finished run's stages (pipeline.py), from its recorded event times."""
        if self.latest_run is None:
            return []
        at, done = self.latest_run
        times = {Topic(topic): time for topic, time in self.store.run_event_times(done.run_id).items()}
        return pipeline_stages(at, done.duration_s, times)

    # -- the deployed model over time ------------------------------------------------------------

    @property
    def thresholds(self) -> Thresholds:
        s = self.settings
        return Thresholds(calibration_low=s.monitor_calibration_low, calibration_high=s.monitor_calibration_high,
                          drift_top_k=s.monitor_drift_top_k, drift_psi=s.monitor_drift_psi)

    def on_period(self, period: MonitoringPeriod, at: datetime) -> list[MonitorAlert]:
        """Store the period; if it is its model's newest of its bucket (or the same period re-scored),
        export its gauges and open or resolve the calibration, AUC and feature-drift incidents."""
        newest = self.store.newest_period(period.bucket, period.run_id, period.model_kind)
        self.store.save_period(period.period_id, period.period, period.bucket, period.run_id, period.model_kind,
                               at, period.model_dump(mode="json"))
        if not is_newer_or_same(period.period, newest):
            return []  # a late, older period must not overrule what newer ones said
        self._export_period(period)
        changes = [
            self._condition(c.kind, c.subject, c.bad, at, c.fire, c.resolve, c.evidence, correlation_id=period.run_id)
            for c in assess(period, self.thresholds)
        ]
        return [c for c in changes if c is not None]

    def _export_period(self, period: MonitoringPeriod) -> None:
        kind, metrics = period.model_kind, period.metrics
        if period.labelled:
            for gauge, value in ((m.PERIOD_AUC, metrics.auc), (m.PERIOD_AUC_CI_HIGH, metrics.auc_ci_high),
                                 (m.BASELINE_AUC, period.baseline_auc), (m.AUC_DROP_LIMIT, auc_drop_limit(period)),
                                 (m.PERIOD_CALIBRATION, metrics.calibration),
                                 (m.PERIOD_CALIBRATION_CI_LOW, metrics.calibration_ci_low),
                                 (m.PERIOD_CALIBRATION_CI_HIGH, metrics.calibration_ci_high)):
                value = _finite(value)
                if value is None:
                    try:
                        gauge.remove(kind)
                    except KeyError:
                        pass
                else:
                    gauge.labels(kind).set(value)
        top_k = self.settings.monitor_drift_top_k
        top = sorted(top_features(period, top_k), key=lambda d: (d.importance_rank or 0, -d.psi))[:top_k]
        exported = {d.feature for d in top}
        for feature in self.psi_exported.get(kind, set()) - exported:
            try:
                m.FEATURE_PSI.remove(kind, feature)
            except KeyError:
                pass
        for d in top:
            m.FEATURE_PSI.labels(kind, d.feature).set(d.psi)
        self.psi_exported[kind] = exported

    # -- heartbeats and errors ----------------------------------------------------------------

    def on_heartbeat(self, beat: ServiceHeartbeat, at: datetime, now: datetime | None = None) -> None:
        now = now or utcnow()
        seen_at = min(at, now)  # a sender's clock ahead of ours must not keep it "alive" longer
        key = (beat.service, beat.instance)
        known = self.instances.get(key)
        if known is not None and known.seen_at >= seen_at:
            return  # a replayed, older heartbeat
        payload = beat.model_dump(mode="json")
        self.instances[key] = InstanceBeat(beat.service, beat.instance, seen_at, payload)
        if beat.service not in self.watched:
            m.init_counters((), [beat.service])
        self.watched[beat.service] = max(seen_at, self.watched.get(beat.service, seen_at))
        self.store.save_heartbeat(beat.service, beat.instance, seen_at, payload)
        if beat.service == "gateway" and beat.requests_total is not None:
            self.traffic.add(beat.instance, seen_at.timestamp(), beat.requests_total, beat.request_errors_total or 0)

    def on_error(self, error: ServiceError, at: datetime) -> None:
        m.SERVICE_ERRORS.labels(error.service, error.level).inc()
        self.errors_seen.append(at.timestamp())

    # -- periodic evaluation ----------------------------------------------------------------------

    def live_instances(self, now: datetime) -> list[InstanceBeat]:
        return [b for b in self.instances.values() if now - b.seen_at <= self.timeout]

    def check(self, now: datetime | None = None) -> list[MonitorAlert]:
        """Evaluate liveness, latency and error rate; returns the incidents opened or resolved."""
        now = now or utcnow()
        changes: list[MonitorAlert | None] = []
        in_grace = now - self.started_at < self.timeout  # just started: heartbeats are still arriving

        for (service, instance), beat in list(self.instances.items()):
            if now - beat.seen_at > self.timeout * FORGET_AFTER_TIMEOUTS:
                del self.instances[(service, instance)]
                self.store.forget_instance(service, instance)

        live = self.live_instances(now)
        for service, last_seen in sorted(self.watched.items()):
            age = (now - last_seen).total_seconds()
            alive = age <= self.timeout.total_seconds()
            count = sum(1 for b in live if b.service == service)
            m.SERVICE_ALIVE.labels(service).set(1 if alive else 0)
            m.SERVICE_INSTANCES.labels(service).set(count)
            m.HEARTBEAT_AGE.labels(service).set(min(age, 10 * 365 * 86400))
            cpu_percent = sum(float(b.beat.get("cpu_percent") or 0) for b in live if b.service == service)
            m.SERVICE_CPU.labels(service).set(cpu_percent / 100.0)  # heartbeats carry percent; export the ratio
            m.SERVICE_RSS.labels(service).set(sum(int(b.beat.get("rss_bytes") or 0) for b in live if b.service == service))
            if not alive and in_grace:
                continue  # unknown yet: neither fire nor resolve
            seen = "never" if last_seen.timestamp() == 0 else last_seen.isoformat()
            changes.append(self._condition(
                "service_down", service, not alive, now,
                fire=(
                    f"서비스 '{service}'의 하트비트가 {self.timeout.total_seconds():.0f}초 이상 없습니다 (마지막: {seen}). "
                    f"Service '{service}' is down: no heartbeat for over {self.timeout.total_seconds():.0f} s."
                ),
                resolve=f"서비스 '{service}'가 다시 응답합니다. Resolved: service '{service}' is sending heartbeats again.",
                evidence=ServiceDownEvidence(service=service, last_seen=seen, timeout_s=self.timeout.total_seconds()),
            ))

        p95 = gateway_p95_ms(live)  # the contract's response_time; Prometheus reads the gateway's histogram
        if p95 is not None:
            limit = self.settings.monitor_response_time_ms
            changes.append(self._condition(
                "response_time", "gateway", p95 > limit, now,
                fire=(
                    f"API 응답 시간 p95 {p95:.0f} ms가 임계값 {limit:.0f} ms를 넘었습니다. "
                    f"API p95 response time {p95:.0f} ms is above {limit:.0f} ms."
                ),
                resolve=f"API 응답 시간이 {p95:.0f} ms로 정상화되었습니다. Resolved: p95 back to {p95:.0f} ms.",
                evidence=ResponseTimeEvidence(response_time=round(p95, 3), threshold_ms=limit),
            ))

        requests, errors = self.traffic.totals(now.timestamp())
        success_pct, error_pct = api_rates(requests, errors)
        m.API_SUCCESS.set(success_pct / 100.0)
        m.API_REQUESTS_WINDOW.set(requests)
        limit_pct = self.settings.monitor_error_rate_percent
        enough = requests >= self.settings.monitor_error_rate_min_requests
        changes.append(self._condition(
            "error_rate", "gateway", enough and error_pct > limit_pct, now,
            fire=(
                f"API 오류율 {error_pct:.1f}%가 임계값 {limit_pct:.1f}%를 넘었습니다 ({errors}/{requests}). "
                f"API error rate {error_pct:.1f}% is above {limit_pct:.1f}%."
            ),
            resolve=f"API 오류율이 {error_pct:.1f}%로 정상화되었습니다. Resolved: error rate {error_pct:.1f}%.",
            evidence=ErrorRateEvidence(error_rate=error_pct, requests=requests, errors=errors,
                                       threshold_percent=limit_pct),
        ))
        health = self.health(now)
        m.SYSTEM_CPU.set(health.cpu_usage / 100.0)
        m.SYSTEM_MEMORY.set(health.memory_usage / 100.0)
        m.SYSTEM_HEALTHY.set(1 if health.status == "healthy" else 0)
        return [c for c in changes if c is not None]

    # -- the snapshot for the gateway -------------------------------------------------------------

    def health(self, now: datetime | None = None) -> SystemHealth:
        now = now or utcnow()
        live = self.live_instances(now)
        cpu, memory = resource_use(live)
        requests, errors = self.traffic.totals(now.timestamp())
        success_pct, error_pct = api_rates(requests, errors)
        kinds = {kind for kind, _ in self.open}
        cutoff = now.timestamp() - self.settings.monitor_traffic_window_s
        self.errors_seen = [t for t in self.errors_seen if t >= cutoff]
        services = {}
        for service, last_seen in sorted(self.watched.items()):
            mine = [b for b in live if b.service == service]
            services[service] = ServiceHealth(
                status="up" if mine else "down",
                instances=len(mine),
                last_seen=None if last_seen.timestamp() == 0 else last_seen.isoformat(),
                cpu_percent=round(sum(float(b.beat.get("cpu_percent") or 0) for b in mine), 2),
                rss_bytes=sum(int(b.beat.get("rss_bytes") or 0) for b in mine),
                in_flight=sum(int(b.beat.get("in_flight") or 0) for b in mine),
            )
        p95 = gateway_p95_ms(live)
        return SystemHealth(
            status=status_of("service_down" in kinds, "error_rate" in kinds, "response_time" in kinds),
            cpu_usage=round(cpu, 2),
            memory_usage=round(memory, 2),
            api_success_rate=success_pct,
            error_rate=error_pct,
            response_time_ms=None if p95 is None else round(p95, 3),
            requests_in_window=requests,
            errors_in_window=len(self.errors_seen),
            services=services,
            active_alerts=[
                ActiveAlert(alert_id=i.alert.alert_id, kind=i.alert.kind, subject=i.alert.subject,
                            severity=i.alert.severity, message=i.alert.message, since=i.opened_at.isoformat())
                for i in sorted(self.open.values(), key=lambda i: i.alert.alert_id)
            ],
            generated_at=now.isoformat(),
        )

    def snapshot(self, now: datetime | None = None) -> MonitorSnapshot:
        now = now or utcnow()
        health = self.health(now)
        if self.latest_run is None:
            return MonitorSnapshot(run_id=None, metrics=ModelMetrics(), health=health)
        at, done = self.latest_run
        health.run = RunRef(run_id=done.run_id, finished_at=at.isoformat(), experiment_name=done.experiment_name)
        return MonitorSnapshot(run_id=done.run_id, metrics=done.metrics, health=health, pipeline=self.pipeline())


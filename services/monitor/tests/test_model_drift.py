"""The deployed model's alerts from monitoring periods.

The pure decision (model_drift.assess): calibration fires only outside the band AND with a
95% interval that excludes 1, AUC only when the drop exceeds its interval, feature drift only
for top features above PSI 0.2. The monitor on a real (SQLite) database: each incident fires
once with the period and feature named, survives a restart, resolves on a later period in band,
ignores an older period arriving late, and exports bounded gauges."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY

from ctrops_common.db import make_engine
from ctrops_common.events import FeatureDrift, MonitoringPeriod, PeriodMetrics
from ctrops_monitor.model_drift import Thresholds, assess, auc_drop_limit, top_features
from ctrops_monitor.monitor import Monitor
from ctrops_monitor.settings import MonitorSettings
from ctrops_monitor.store import MonitorStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
RUN = "b" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def drift(feature: str, psi: float, rank: int | None = None) -> FeatureDrift:
    return FeatureDrift(feature=feature, kind="numeric", test="psi", statistic=psi / 2, p_value=None, psi=psi,
                        drifted=psi > 0.2, importance_rank=rank)


def period(label: str = "2026-03", *, calibration: tuple[float, float, float | None] | None = (1.0, 0.9, 1.1),
           auc: tuple[float, float, float] | None = (0.80, 0.78, 0.82), baseline: float | None = 0.80,
           features: list[FeatureDrift] | None = None, labelled: bool = True, run_id: str = RUN,
           kind: str = "gbdt") -> MonitoringPeriod:
    metrics = {"predicted_clicks": 400.0, "mean_probability": 0.02, "estimated_auc": 0.79}
    if labelled:
        metrics["actual_clicks"] = 400
        if calibration is not None:
            metrics.update(calibration=calibration[0], calibration_ci_low=calibration[1],
                           calibration_ci_high=calibration[2])
        if auc is not None:
            metrics.update(auc=auc[0], auc_ci_low=auc[1], auc_ci_high=auc[2])
    return MonitoringPeriod(
        period_id=f"{run_id}:{kind}:{label}", period=label, bucket="month", run_id=run_id, model_kind=kind,
        job_ids=["job"], rows=20_000, labelled=labelled, metrics=PeriodMetrics(**metrics), baseline_auc=baseline,
        baseline_auc_ci_low=None if baseline is None else baseline - 0.02,
        drift=features if features is not None else [drift("history_a_1", 0.05, 1), drift("hour", 0.02, 2)],
        prediction_psi=0.01, reference_rows=48_000,
    )


def bad(p: MonitoringPeriod) -> set[tuple[str, str]]:
    return {(c.kind, c.subject) for c in assess(p) if c.bad}


# -- the pure decision ---------------------------------------------------------------


def test_a_period_in_band_raises_nothing():
    assert bad(period()) == set()
    kinds = {c.kind for c in assess(period())}
    assert kinds == {"calibration", "auc_drop", "feature_drift"}  # each is decided (and could resolve)


@pytest.mark.parametrize("ratio, low, high, fires", [
    (0.42, 0.38, 0.46, True),  # far out, interval excludes 1
    (1.60, 1.45, 1.77, True),
    (0.70, 0.45, 1.05, False),  # out of band but a small period: the interval holds 1
    (0.85, 0.80, 0.90, False),  # interval excludes 1 but within the band
    (1.40, 1.10, None, True),  # no upper bound (no clicks would give none; here just absent): low > 1
])
def test_calibration_needs_the_band_and_the_interval(ratio, low, high, fires):
    assert (("calibration", "model") in bad(period(calibration=(ratio, low, high)))) is fires


def test_auc_drop_needs_the_drop_to_exceed_its_interval():
    assert ("auc_drop", "model") in bad(period(auc=(0.70, 0.67, 0.73), baseline=0.80))
    assert ("auc_drop", "model") not in bad(period(auc=(0.76, 0.70, 0.82), baseline=0.80))  # within the CI


def test_auc_drop_counts_the_baselines_uncertainty_too():
    # The e2e run's ordinary month: the period's interval ends below the validation AUC, but the
    # validation AUC (about 60 clicks) is uncertain too: 0.033 down is within the joint 95%.
    ordinary = period(auc=(0.7346, 0.7078, 0.7614), baseline=0.768)
    ordinary = ordinary.model_copy(update={"baseline_auc_ci_low": 0.6997})
    assert ("auc_drop", "model") not in bad(ordinary)
    limit = auc_drop_limit(ordinary)
    assert limit is not None and abs(limit - (0.768 - 1.959964 * ((0.0536 / 3.919928) ** 2 + (0.0683 / 1.959964) ** 2) ** 0.5)) < 1e-9
    # The same fall from a precisely known baseline is beyond the joint uncertainty.
    precise = ordinary.model_copy(update={"baseline_auc_ci_low": 0.766})
    assert ("auc_drop", "model") in bad(precise)
    assert not any(c.kind == "auc_drop" for c in assess(period(baseline=None)))  # nothing to compare with


def test_unlabelled_periods_decide_drift_only():
    conditions = assess(period(labelled=False, features=[drift("history_a_1", 0.9, 1)]))
    assert {(c.kind, c.subject, c.bad) for c in conditions} == {("feature_drift", "history_a_1", True)}


def test_only_top_features_drift_alerts_and_every_feature_without_ranks():
    features = [drift("history_a_1", 0.9, 1), drift("feat_e_3", 0.8, 40), drift("hour", 0.15, 2)]
    assert bad(period(features=features)) == {("feature_drift", "history_a_1")}
    assert [d.feature for d in top_features(period(features=features), 10)] == ["history_a_1", "hour"]
    unranked = [drift("history_a_1", 0.9), drift("feat_e_3", 0.8), drift("hour", 0.15)]
    assert bad(period(features=unranked)) == {("feature_drift", "history_a_1"), ("feature_drift", "feat_e_3")}
    strict = Thresholds(drift_top_k=1, drift_psi=0.1)
    assert {c.subject for c in assess(period(features=[drift("a", 0.15, 1), drift("b", 0.5, 2)]), strict)
            if c.bad} == {"a"}


def test_messages_name_the_period_and_feature_in_korean_and_english():
    p = period("2026-04", calibration=(0.42, 0.38, 0.46), auc=(0.70, 0.67, 0.73),
               features=[drift("history_a_1", 0.93, 1)])
    by_kind = {c.kind: c for c in assess(p)}
    cal = by_kind["calibration"]
    assert "2026-04" in cal.fire and "보정" in cal.fire and "Calibration" in cal.fire and "0.42" in cal.fire
    assert (cal.evidence.period, cal.evidence.run_id, cal.evidence.model_kind) == ("2026-04", RUN, "gbdt")
    auc = by_kind["auc_drop"]
    assert "2026-04" in auc.fire and "0.700" in auc.fire and "0.800" in auc.fire and "AUC" in auc.fire
    feat = by_kind["feature_drift"]
    assert feat.subject == "history_a_1" and "'history_a_1'" in feat.fire and "2026-04" in feat.fire
    assert "피처" in feat.fire and "drifted" in feat.fire and feat.evidence.psi == pytest.approx(0.93)


# -- the monitor: incidents and gauges -------------------------------------------------


@pytest.fixture
def settings(tmp_path) -> MonitorSettings:
    return MonitorSettings(data_dir=tmp_path)


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_shift_fires_once_per_incident_and_a_later_period_in_band_resolves(settings, engine):
    store = MonitorStore(engine)
    monitor = Monitor(settings, store, now=at(0))
    assert monitor.on_period(period("2026-01"), at(1)) == []
    shifted = [drift("history_a_1", 1.1, 1), drift("hour", 0.02, 2)]
    fired = monitor.on_period(period("2026-02", calibration=(0.45, 0.41, 0.50), features=shifted), at(2))
    assert sorted((a.kind, a.subject, a.state) for a in fired) == [
        ("calibration", "model", "firing"), ("feature_drift", "history_a_1", "firing")]
    assert all(a.alert_id.endswith(":1") for a in fired)
    assert {a.kind: a.severity for a in fired} == {"calibration": "high", "feature_drift": "medium"}
    # Still shifted next month: the same incidents, no second alert.
    assert monitor.on_period(period("2026-03", calibration=(0.47, 0.43, 0.52), features=shifted), at(3)) == []
    assert sample("ctrops_alert_active", kind="feature_drift", subject="history_a_1") == 1
    assert sample("ctrops_model_period_calibration_ratio", model_kind="gbdt") == pytest.approx(0.47)
    assert sample("ctrops_feature_psi", model_kind="gbdt", feature="history_a_1") == pytest.approx(1.1)

    # Retrained: the new run's next period is in band, and both incidents resolve.
    resolved = monitor.on_period(period("2026-04", run_id="c" * 32), at(4))
    assert sorted((a.kind, a.state) for a in resolved) == [("calibration", "resolved"), ("feature_drift", "resolved")]
    assert {a.alert_id for a in resolved} == {a.alert_id for a in fired}
    assert sample("ctrops_alert_active", kind="calibration", subject="model") == 0
    states = [(m["alert"]["alert_id"], m["alert"]["state"]) for _, m in store.pending_messages()]
    assert len(states) == 4 and sorted(s for _, s in states) == ["firing", "firing", "resolved", "resolved"]


def test_incidents_survive_a_restart_and_late_older_periods_change_nothing(settings, engine):
    store = MonitorStore(engine)
    first = Monitor(settings, store, now=at(0))
    fired = first.on_period(period("2026-05", auc=(0.66, 0.63, 0.69)), at(1))
    assert [(a.kind, a.state) for a in fired] == [("auc_drop", "firing")]
    assert "2026-05" in fired[0].message and fired[0].metrics.period == "2026-05"
    for seq, _ in store.pending_messages():
        store.message_sent(seq)

    restarted = Monitor(settings, MonitorStore(engine), now=at(100))
    assert sample("ctrops_model_period_auc", model_kind="gbdt") == pytest.approx(0.66)  # gauges come back too
    assert restarted.on_period(period("2026-05", auc=(0.65, 0.62, 0.68)), at(101)) == []  # re-scored: same incident
    assert restarted.on_period(period("2026-04"), at(102)) == []  # older and in band: no resolve
    assert [a.kind for a in restarted.snapshot(at(103)).health.active_alerts] == ["auc_drop"]
    resolved = restarted.on_period(period("2026-06"), at(104))
    assert [(a.alert_id, a.state) for a in resolved] == [(fired[0].alert_id, "resolved")]
    again = restarted.on_period(period("2026-07", auc=(0.6, 0.57, 0.63)), at(105))
    assert [a.alert_id for a in again] == ["auc_drop:model:2"]  # a new incident, a new number


def test_a_new_models_months_count_even_after_an_earlier_model_scored_later_ones(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    assert monitor.on_period(period("2026-06"), at(1)) == []  # the first model, scored up to June, in band
    other = "c" * 32  # a model trained afterwards, scored from February on
    fired = monitor.on_period(period("2026-04", auc=(0.66, 0.63, 0.69), run_id=other), at(2))
    assert [(a.kind, a.state) for a in fired] == [("auc_drop", "firing")]
    assert monitor.on_period(period("2026-03", run_id=other), at(3)) == []  # its own older month: late, ignored


def test_feature_psi_series_stay_bounded_to_the_top_features(tmp_path, engine):
    settings = MonitorSettings(data_dir=tmp_path, monitor_drift_top_k=3)
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    unranked = [drift(f"feat_{i}", 0.01 * i) for i in range(30)]
    monitor.on_period(period("2026-01", features=unranked, kind="lstm"), at(1))
    exported = {s.labels["feature"] for f in REGISTRY.collect() if f.name == "ctrops_feature_psi"
                for s in f.samples if s.labels["model_kind"] == "lstm"}
    assert exported == {"feat_29", "feat_28", "feat_27"}  # the highest PSIs when ranks are unknown
    ranked = [drift("history_a_1", 0.05, 1), drift("hour", 0.01, 2), drift("feat_29", 0.5, 9)]
    monitor.on_period(period("2026-02", features=ranked, kind="lstm"), at(2))
    exported = {s.labels["feature"] for f in REGISTRY.collect() if f.name == "ctrops_feature_psi"
                for s in f.samples if s.labels["model_kind"] == "lstm"}
    assert exported == {"history_a_1", "hour"}  # stale series removed; rank 9 is beyond top 3

"""A deployed model's life on the real stack, through the gateway only, for each kind of drift.

Six monthly labelled files per kind (``datagen.drift_sequence``), the behaviour shifting in 2026-04:
``feature`` (the driver history_a_1 moves by one sd: feature drift named history_a_1), ``relation``
(history_a_1's effect flips: the AUC drops) and ``base_rate`` (2.5x the click odds: calibration).
Train on January; score February to May as batch jobs (each a monitoring period); the expected
alert fires in April, names the feature or the model, and does not fire again in May (one
incident); nothing fires before April; retrain on the new data (the new champion must be
promoted); score June with the champion: the incident resolves. Along the way: JSON scoring
equals the batch CSV to 1e-6, and the SI dashboard's performanceData shows the scored months.
The three kinds share one stack, one after another: each looks only at its own runs' alerts.
"""

from __future__ import annotations

import csv
import io

import pytest

from ctrops_common.datagen import drift_sequence
from ctrops_common.events import Topic

ROWS_PER_MONTH = 6_000


EXPECTED = {"feature": ("feature_drift", "history_a_1"), "relation": ("auc_drop", "model"),
            "base_rate": ("calibration", "model")}


def _months(kind: str, folder):
    sequence = drift_sequence(kind, months=6, shift_at=3, rows_per_month=ROWS_PER_MONTH, start="2026-01",
                              seed=7, ctr=0.05)
    paths = sequence.write(folder)
    return sequence, dict(zip(sequence.labels, paths))


def _score(stack, path, period: str, run: str = "champion") -> dict:
    with open(path, "rb") as fh:
        response = stack.http.post(f"/api/predict/{run}/batch", data={"period": period},
                                   files={"file": (path.name, fh, "text/csv")})
    assert response.status_code == 202, response.text[:1000]
    accepted = stack.strict_json(response)
    assert accepted["labelled"] is True and accepted["rows"] == ROWS_PER_MONTH and accepted["period"] == period
    job = stack.wait_until(lambda: stack.json(accepted["statusUrl"]), lambda b: b["status"] in ("completed", "failed"),
                           240, f"scoring job of {period}")
    assert job["status"] == "completed", job
    assert job["rowsDone"] == ROWS_PER_MONTH and job["periodId"]
    return {**accepted, **job}


def _predictions(stack, job: dict) -> list[tuple[int, float]]:
    response = stack.get(job["downloadUrl"])
    assert response.status_code == 200, response.text[:500]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    return [(int(r["row"]), float(r["probability"])) for r in rows]


def _alerts(stack, runs: set[str]) -> list:
    """The model alerts raised by periods of ``runs`` (this test's models), oldest first."""
    return [e.payload for e in stack.topic_events(Topic.MONITOR_ALERT)
            if e.payload.kind in ("calibration", "auc_drop", "feature_drift")
            and e.payload.metrics.run_id in runs]  # the period evidence of a model alert names its run


@pytest.mark.parametrize("kind", ["feature", "relation", "base_rate"])
def test_drift_alert_fires_once_in_the_shift_month_and_clears_after_retraining(stack, kind, tmp_path):
    sequence, paths = _months(kind, tmp_path)
    assert sequence.shift_month == "2026-04"
    expected_kind, expected_subject = EXPECTED[kind]
    runs: set[str] = set()
    upload = stack.upload(paths["2026-01"])
    run_id = stack.train(upload["file_id"], {**stack.fast_training, "epochs": 3})
    runs.add(run_id)
    done = stack.wait_status(run_id, ("completed", "failed"), 400)
    assert done["status"] == "completed", done

    # February: JSON rows equal the batch's CSV to 1e-6, in request order.
    february = _score(stack, paths["2026-02"], "2026-02")
    assert february["runId"] == run_id
    batch = _predictions(stack, february)
    assert [r for r, _ in batch] == list(range(ROWS_PER_MONTH))
    with open(paths["2026-02"], newline="") as fh:
        records = [row for _, row in zip(range(50), csv.DictReader(fh))]
    rows = [{k: (None if v == "" else v) for k, v in record.items()} for record in records[::-1]]  # reversed order
    response = stack.http.post("/api/predict/champion", json={"rows": rows})
    assert response.status_code == 200, response.text[:1000]
    online = stack.strict_json(response)
    assert online["runId"] == run_id and online["rows"] == 50
    assert [p["row"] for p in online["predictions"]] == list(range(50))
    for p in online["predictions"]:
        assert abs(p["probability"] - batch[49 - p["row"]][1]) < 1e-6

    # March: still in band, no model alert yet.
    _score(stack, paths["2026-03"], "2026-03")
    assert [a for a in _alerts(stack, runs) if a.state == "firing"] == []

    # April: the shift. The expected alert names the feature (or the model) and the month.
    _score(stack, paths["2026-04"], "2026-04")
    fired = stack.wait_until(lambda: [a for a in _alerts(stack, runs) if a.state == "firing"], bool, 60,
                             "a model alert")
    drift = [a for a in fired if a.kind == expected_kind]
    assert drift, fired
    assert drift[0].subject == expected_subject and drift[0].metrics.period == "2026-04", drift[0]
    assert all(a.metrics.period == "2026-04" for a in fired), fired  # nothing fired before the shift
    # The gateway learns of the alert from its own consumer of the topic, a moment after it is published.
    stack.wait_until(lambda: stack.json("/api/dashboard/si")["performanceAlert"], lambda a: a["show"] is True, 30,
                     "the SI dashboard showing the alert")

    # May: still shifted -- the same incident, not a second alert.
    _score(stack, paths["2026-05"], "2026-05")
    firing_ids = [a.alert_id for a in _alerts(stack, runs) if a.state == "firing"]
    assert len(firing_ids) == len(set(firing_ids)) == len(fired), firing_ids

    # Retrain on the new behaviour (May's file uploaded for training): the new model is not worse.
    may = stack.upload(paths["2026-05"])
    response = stack.http.post(f"/api/train/{run_id}/retrain", json={"fileId": may["file_id"]})
    assert response.status_code == 200, response.text[:1000]
    retrain_id = stack.strict_json(response)["run_id"]
    runs.add(retrain_id)
    done = stack.wait_status(retrain_id, ("completed", "failed"), 400)
    assert done["status"] == "completed", done
    [event] = [e for e in stack.topic_events(Topic.TRAINING_DONE, retrain_id)][:1]
    assert event.payload.replaces == run_id
    assert event.payload.promoted is True, event.payload.promotion

    # June, scored by the new champion: the incident resolves.
    june = _score(stack, paths["2026-06"], "2026-06")
    assert june["runId"] == retrain_id
    resolved = stack.wait_until(
        lambda: [a for a in _alerts(stack, runs) if a.state == "resolved" and a.kind == expected_kind], bool, 60,
        "the alert resolved")
    assert resolved[0].alert_id == drift[0].alert_id

    # The SI dashboard's performance chart is the model's months, from real scoring.
    data = stack.wait_until(lambda: stack.json("/api/dashboard/si")["performanceData"],
                            lambda d: "2026-06" in d["labels"], 30, "June on the SI dashboard")
    assert data["labels"] == ["2026-02", "2026-03", "2026-04", "2026-05", "2026-06"], data
    series = ("accuracy", "valAccuracy", "loss", "valLoss", "f1Score", "valF1Score")
    assert all(len(data[k]) == len(data["labels"]) for k in series), data
    assert data["source"] == "monitoring" and data["runId"] == retrain_id, data


def test_one_file_with_a_date_column_becomes_the_months_of_the_si_dashboard(stack, tmp_path):
    """February to May as ONE CSV with a ``date`` per row and no period asked for: the scorer splits it by
    month, and the SI dashboard's performanceData shows those four months of the new champion."""
    sequence, paths = _months("feature", tmp_path)
    months = ["2026-02", "2026-03", "2026-04", "2026-05"]
    combined = tmp_path / "feb-may.csv"
    combined.write_bytes(sequence.combined_csv_bytes(months))
    run_id = stack.train(stack.upload(paths["2026-01"])["file_id"], {**stack.fast_training, "epochs": 2})
    done = stack.wait_status(run_id, ("completed", "failed"), 400)
    assert done["status"] == "completed", done

    with open(combined, "rb") as fh:
        response = stack.http.post(f"/api/predict/{run_id}/batch", files={"file": ("feb-may.csv", fh, "text/csv")})
    assert response.status_code == 202, response.text[:1000]
    accepted = stack.strict_json(response)
    assert (accepted["period"], accepted["timeColumn"], accepted["rows"]) == (None, "date", 4 * ROWS_PER_MONTH)
    assert (accepted["firstDate"][:7], accepted["lastDate"][:7]) == ("2026-02", "2026-05")
    job = stack.wait_until(lambda: stack.json(accepted["statusUrl"]), lambda b: b["status"] in ("completed", "failed"),
                           240, "the combined scoring job")
    assert job["status"] == "completed", job
    assert job["periodIds"] == [f"{run_id}:{job['modelKind']}:{m}" for m in months], job
    periods = [e.payload for e in stack.topic_events(Topic.MONITORING_PERIOD, run_id)]
    assert sorted((p.period, p.rows) for p in periods) == [(m, ROWS_PER_MONTH) for m in months]

    data = stack.wait_until(lambda: stack.json("/api/dashboard/si")["performanceData"],
                            lambda d: d.get("runId") == run_id and d.get("labels") == months, 60,
                            "performanceData of the combined file's months")
    assert data["source"] == "monitoring" and data["bucket"] == "month"
    assert all(v is not None for v in data["accuracy"]), data

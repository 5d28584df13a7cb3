"""The run catalogue: durable across instances, idempotent on redelivery, importance kept per run;
and which folder each model choice of a run names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ctrops_common.db import make_engine
from ctrops_common.events import new_id
from ctrops_scorer.catalogue import RunCatalogue, is_run_ref
from ctrops_scorer.models import NoSuchModel, choose_model

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_runs_survive_a_new_instance_and_redelivery_keeps_the_first_time(tmp_path, make_done):
    url = f"sqlite:///{tmp_path / 'scorer.sqlite3'}"
    first = RunCatalogue(make_engine(url))
    a, b = make_done(new_id(), new_id()), make_done(new_id(), new_id(), promoted=False)
    first.record_done(a, T0)
    first.record_done(b, T0 + timedelta(hours=1))
    first.record_done(a, T0 + timedelta(hours=2))  # redelivered: not newer than b
    first.record_importance(a.run_id, ["hour", "age_group"])

    again = RunCatalogue(make_engine(url))  # a restarted scorer (and an empty broker): nothing to replay
    assert again.resolve("latest").run_id == b.run_id
    champion = again.resolve("champion")
    assert champion.run_id == a.run_id and champion.promoted and champion.finished_at == T0
    assert champion.done == a  # the typed payload, read back as TrainingDone
    assert champion.importance_ranks() == {"hour": 1, "age_group": 2}
    assert again.resolve(b.run_id).importance_ranks() is None
    assert again.resolve(new_id()) is None

    again.record_importance(a.run_id, ["age_group"])  # a re-explained run: the newest order
    assert again.resolve(a.run_id).importance == ["age_group"]


def test_run_references():
    assert is_run_ref("latest") and is_run_ref("champion") and is_run_ref(new_id())
    assert not is_run_ref("LATEST") and not is_run_ref("../x") and not is_run_ref("abc")


def test_model_choice_names_each_kind_and_refuses_a_missing_one(make_done):
    done = make_done(new_id(), new_id(), champion="gbdt")
    champion = choose_model(done)
    assert (champion.kind, champion.location, champion.label) == ("gbdt", f"runs/{done.run_id}/model/gbdt", "LightGBM")
    assert champion.result.metrics.auc == 0.7
    assert choose_model(done, "lstm").location == f"runs/{done.run_id}/model/lstm"

    only_lstm = make_done(new_id(), new_id(), champion="lstm", kinds=("lstm",))
    with pytest.raises(NoSuchModel, match="has no LightGBM"):
        choose_model(only_lstm, "gbdt")

    # A run from before the challenger: one folder, no models list.
    old = only_lstm.model_copy(update={"models": [], "model_location": f"runs/{only_lstm.run_id}/model/"})
    choice = choose_model(old)
    assert (choice.kind, choice.location, choice.result) == ("lstm", f"runs/{only_lstm.run_id}/model", None)

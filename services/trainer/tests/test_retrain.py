"""Retraining through the real trainer process on the real broker, MLflow on: an ordinary run is
promoted with no check; a retrain that learnt nothing loses to the model it replaces on the same
validation rows and leaves the alias where it was; a retrain on shifted data wins and moves it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ctrops_common.events import Topic, TrainingConfig, TrainingRequested, new_id
from ctrops_common.testdata import variant_parquet

RUN_TOPICS = [Topic.TRAINING_STARTED, Topic.TRAINING_PROGRESS, Topic.TRAINING_DONE, Topic.TRAINING_FAILED]
CONFIG = TrainingConfig(epochs=2, batch_size=512, max_seq_len=16, lstm_hidden=8, mlp_hidden=[16], learning_rate=0.01,
                        experiment_name="retrain-tests", seed=7)
NEW_ROWS = 4000  # of each retrain's file, 8% clicks
MARGIN = 0.1  # AUC difference both decisions must clear


def ended(events) -> bool:
    return any(e.type in (Topic.TRAINING_DONE, Topic.TRAINING_FAILED) for e in events)


def place(data_dir: Path, source: Path) -> tuple[str, str]:
    """Copy a training file into the store: (file id, its location)."""
    file_id = new_id()
    location = f"files/{file_id}/data.parquet"
    (data_dir / location).parent.mkdir(parents=True)
    shutil.copyfile(source, data_dir / location)
    return file_id, location


async def train(bus_tools, data_dir: Path, source: Path, replaces=None):
    collect, publish = bus_tools
    file_id, location = place(data_dir, source)
    retrain = {} if replaces is None else {  # as the gateway asks: the replaced run and its champion's folder
        "replaces": replaces.run_id, "replaces_model_location": replaces.model_location}
    request = TrainingRequested(run_id=new_id(), file_id=file_id, parquet_location=location, config=CONFIG, **retrain)
    await publish(Topic.TRAINING_REQUESTED, request, correlation_id=request.run_id)
    events = await collect(RUN_TOPICS, request.run_id, ended, timeout_s=300)
    done = [e.payload for e in events if e.type == Topic.TRAINING_DONE]
    assert done, [(e.type.value, e.payload) for e in events if e.type == Topic.TRAINING_FAILED]
    return done[0]


async def test_the_alias_moves_on_retrain_only_when_the_new_champion_is_not_worse(
        start_service, bus_tools, generated, without_signal_in_training_rows, data_dir: Path, tmp_path: Path):
    from mlflow.tracking import MlflowClient

    trainer = start_service("trainer", {"CTROPS_TRAINER_LEASE_TIMEOUT_S": "3"})  # MLflow on: local SQLite

    def alias() -> int:
        return int(client.get_model_version_by_alias("ctrops-ctr", "champion").version)

    # An ordinary run on 8,000 rows of the 'mixed' data: promoted, nothing compared.
    first = await train(bus_tools, data_dir, generated[0])
    # Opened once the trainer has made the store: opened at its start, this client ran MLflow's migrations
    # on the same SQLite file as the trainer's warm-up and failed once ("_alembic_tmp_experiments already
    # exists") in a full run.
    client = MlflowClient(f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    assert first.promoted is True and first.promotion is None and first.replaces is None
    assert first.registered_version == 1 and alias() == 1
    assert client.get_model_version("ctrops-ctr", "1").tags["ctrops.promoted"] == "true"

    # A retrain on data of the same kind whose training rows carry no signal: the new champion
    # (the better of its two models) loses to run 1's on the new run's own validation rows.
    weak = without_signal_in_training_rows(variant_parquet(tmp_path, "mixed", NEW_ROWS, seed=7, ctr=0.08)[0],
                                           tmp_path / "weak.parquet", CONFIG)
    second = await train(bus_tools, data_dir, weak, replaces=first)
    check = second.promotion
    print(f"\nweak retrain: new {check.auc_new:.4f} old {check.auc_old:.4f} p={check.p_value:.2g}")
    assert second.replaces == first.run_id and check.replaced_run_id == first.run_id
    assert second.promoted is False and check.promoted is False and check.method == "DeLong paired"
    assert check.auc_old - check.auc_new > MARGIN and check.ci_high < 0
    champion = next(m for m in second.models if m.kind == second.champion)
    # The new side of the comparison is the new champion on its validation rows: its own AUC, rows, clicks.
    assert check.auc_new == pytest.approx(champion.metrics.auc, abs=1e-9)
    assert (check.val_rows, check.val_clicks) == (champion.val_rows, champion.val_clicks)
    assert "worse" in check.reason and first.run_id[:8] in check.reason
    # Registered as a version all the same; the alias stays on run 1's.
    assert second.registered_version == 2 and alias() == 1
    lost = client.get_model_version("ctrops-ctr", "2")
    assert lost.tags["ctrops.promoted"] == "false" and lost.tags["ctrops.replaces"] == first.run_id
    assert client.get_run(second.mlflow_run_id).data.tags["ctrops.replaces"] == first.run_id

    # A retrain on shifted data (the clicks now follow another hour window): it wins, the alias moves.
    shifted = variant_parquet(tmp_path, "hour", NEW_ROWS, seed=7, ctr=0.08)[0]
    third = await train(bus_tools, data_dir, shifted, replaces=first)
    check = third.promotion
    print(f"shifted retrain: new {check.auc_new:.4f} old {check.auc_old:.4f} p={check.p_value:.2g}")
    assert third.promoted is True and check.promoted is True and check.method == "DeLong paired"
    assert check.auc_new - check.auc_old > MARGIN and check.ci_low > 0
    assert third.registered_version == 3 and alias() == 3
    assert client.get_model_version("ctrops-ctr", "3").tags["ctrops.promoted"] == "true"
    assert "NOT promoted" in trainer.log()

    # A retrain whose replaced model is gone from the store: nothing to compare with, promoted, and why.
    gone = first.model_copy(update={"run_id": new_id(), "model_location": f"runs/{new_id()}/model/gbdt"})
    fourth = await train(bus_tools, data_dir, shifted, replaces=gone)
    assert fourth.promoted is True and fourth.promotion.method == "not compared" and fourth.promotion.promoted
    assert "could not be loaded" in fourth.promotion.reason and fourth.replaces == gone.run_id
    assert fourth.registered_version == 4 and alias() == 4
    assert "could not be loaded" in trainer.log()

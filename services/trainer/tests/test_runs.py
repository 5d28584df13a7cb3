"""The run-state table: one winner per attempt, takeover after a dead lease, never trained twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ctrops_common.db import make_engine
from ctrops_trainer.runs import RunStore

RUN = "a" * 32


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(make_engine(f"sqlite:///{tmp_path / 'trainer.sqlite3'}"))


def test_first_delivery_trains_and_a_second_trainer_waits_while_the_lease_is_fresh(store: RunStore):
    assert store.claim(RUN, "w1", lease_s=30, max_attempts=2).action == "train"
    assert store.claim(RUN, "w2", lease_s=30, max_attempts=2).action == "wait"
    assert store.renew(RUN, "w1") == (True, False)
    assert store.renew(RUN, "w2") == (False, False)  # not w2's lease


def test_a_dead_trainers_run_is_taken_over_then_failed_when_attempts_are_used_up(store: RunStore):
    assert store.claim(RUN, "w1", lease_s=0.2, max_attempts=2).attempt == 1
    time.sleep(0.3)  # w1 stopped renewing (killed)
    second = store.claim(RUN, "w2", lease_s=0.2, max_attempts=2)
    assert (second.action, second.attempt, second.previous_status) == ("train", 2, "running")  # a stale lease
    assert store.renew(RUN, "w1") == (False, False)  # w1's lease is gone for good
    time.sleep(0.3)
    assert store.claim(RUN, "w3", lease_s=0.2, max_attempts=2).action == "exhausted"


def test_a_completed_run_is_never_trained_again(store: RunStore):
    store.claim(RUN, "w1", lease_s=30, max_attempts=2)
    assert store.finish(RUN, "w1", "completed", {"run_id": RUN, "x": 1})
    for worker in ("w1", "w2"):
        claim = store.claim(RUN, worker, lease_s=30, max_attempts=2)
        assert claim.action == "completed" and claim.result == {"run_id": RUN, "x": 1}
    assert not store.finish(RUN, "w1", "failed", {"run_id": RUN})  # a final state is final


def test_only_the_lease_holder_may_finish(store: RunStore):
    store.claim(RUN, "w1", lease_s=30, max_attempts=2)
    assert not store.finish(RUN, "w2", "completed", {})
    assert store.get(RUN)["status"] == "running"


def test_a_released_run_is_retried_at_once_and_counts_as_an_attempt(store: RunStore):
    store.claim(RUN, "w1", lease_s=30, max_attempts=3)
    store.release(RUN, "w1")
    claim = store.claim(RUN, "w2", lease_s=30, max_attempts=3)
    assert (claim.action, claim.attempt, claim.previous_status) == ("train", 2, "interrupted")


def test_cancel_reaches_the_running_trainer_and_a_run_not_yet_started(store: RunStore):
    store.claim(RUN, "w1", lease_s=30, max_attempts=2)
    store.request_cancel(RUN)
    assert store.renew(RUN, "w1") == (True, True)

    later = "b" * 32
    store.request_cancel(later)  # before any trainer saw the request
    assert store.claim(later, "w1", lease_s=30, max_attempts=2).action == "cancelled"

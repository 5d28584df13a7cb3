"""Issue 17's must-show on the real stack: kill -9 of the (memory-only) broker during a run.

The module's stack runs on its own embedded broker so the kill touches no other module. The
broker is started again on the same port, empty, as the supervisor does (its restart is
tested in tests/test_stack_lifecycle.py). Within 60 s of the kill: the run ended completed
or failed with a reason, and a new upload + train completed; while the broker was down
POST /api/train answered 503 with Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ctrops_common.broker import EmbeddedBroker, free_port

EPOCHS = 8
RUN = {"epochs": EPOCHS, "batchSize": 256, "maxSeqLen": 32, "lstmHidden": 16, "mlpHidden": "32",
       "learningRate": 0.01, "downsampling": False, "earlyStoppingPatience": None, "experimentName": "e2e_broker"}


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    log = tmp_path_factory.mktemp("own-broker") / "broker.log"
    holder = {"broker": EmbeddedBroker(free_port(), log_file=log).start(), "log": log}
    try:
        yield holder
    finally:
        holder["broker"].stop()


@pytest.fixture(scope="module")
def stack_env(own_broker: dict[str, Any]) -> dict[str, str]:
    return {"CTROPS_KAFKA_BOOTSTRAP_SERVERS": own_broker["broker"].bootstrap_servers}


def test_kill_9_of_the_broker_during_a_run(stack, sample_csv, own_broker):
    csv, _ = sample_csv
    file_id = stack.upload(csv)["file_id"]
    run_id = stack.train(file_id, RUN)
    status = stack.wait_status_epoch(run_id, 1, 300)
    assert status["status"] == "training", status

    broker: EmbeddedBroker = own_broker["broker"]
    broker.process.kill()
    broker.process.wait()
    killed = time.monotonic()

    with httpx.Client(base_url=stack.url, timeout=30) as raw:  # stack.http fails on any 5xx by design
        stack.wait_until(lambda: raw.get("/api/health").json(), lambda b: "broker" in b["down"], 10,
                         "health names the broker")
        refused = raw.post("/api/train", json={"file_id": file_id, "config": stack.fast_training})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0 and "broker" in refused.json()["detail"]

    time.sleep(max(0.0, 2 - (time.monotonic() - killed)))  # the supervisor's first backoff
    own_broker["broker"] = EmbeddedBroker(broker.port, log_file=own_broker["log"]).start()

    final = stack.wait_status(run_id, ("completed", "failed"), 60 - (time.monotonic() - killed))
    if final["status"] == "failed":
        assert final.get("error") or final.get("reason"), final
    second = stack.upload(csv)["file_id"]
    new_run = stack.train(second, stack.fast_training)
    done = stack.wait_status(new_run, ("completed", "failed"), 60 - (time.monotonic() - killed))
    assert done["status"] == "completed", (done, stack.logs("trainer")[-3000:])
    took = time.monotonic() - killed
    assert took < 60, took
    print(f"\nbroker killed -> run {final['status']}, new run completed {took:.1f} s after the kill")

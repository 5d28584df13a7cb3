"""Fixtures of the trainer tests: small generated training files in the training layout."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads in this process: idle OpenMP threads must not spin on the shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from ctrops_common.testdata import training_parquet

# Small enough for seconds per epoch on 2 shared cores; 8% clicks so that 8,000 rows still
# hold ~630 clicks (the planted signal needs clicks to be learnt, not rows).
ROWS = 8000
CTR = 0.08


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(parquet path, ground truth) of generated data with a planted signal."""
    return training_parquet(tmp_path_factory.mktemp("generated"), ROWS, seed=42, ctr=CTR)


@pytest.fixture
def place_training_file(generated, data_dir: Path):
    """Copy the generated file into this test's store as files/<file_id>/data.parquet; returns the relative path."""
    import shutil

    def place(file_id: str) -> str:
        relative = f"files/{file_id}/data.parquet"
        target = data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(generated[0], target)
        return relative

    return place


async def collect_events(topics, run_id: str, until, timeout_s: float = 120) -> list:
    """Read this test's events of ``topics`` for ``run_id`` from the beginning until ``until(events)``.

    Events are returned in arrival order per topic (each run's events share one partition
    per topic, keyed by run id).
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ctrops_common.events import decode_event
    from ctrops_common.settings import CommonSettings

    settings = CommonSettings()
    names = {settings.topic_prefix + t.value: t for t in topics}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    found: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        partitions: list[TopicPartition] = []
        for name in names:
            while (parts := consumer.partitions_for_topic(name)) is None:
                await consumer._client.force_metadata_update()  # topics are created by the services
                if loop.time() > deadline:
                    raise TimeoutError(f"topic {name} does not exist")
                await asyncio.sleep(0.2)
            partitions += [TopicPartition(name, p) for p in parts]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not until(found):
            if loop.time() > deadline:
                raise TimeoutError(f"events so far: {[(e.type.value, e.payload) for e in found]}")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = decode_event(names[record.topic].value, record.value)
                    if event.correlation_id == run_id:
                        found.append(event)
    finally:
        await consumer.stop()
    return found


async def publish(topic, payload, correlation_id: str | None = None) -> None:
    from ctrops_common.bus import Bus
    from ctrops_common.settings import CommonSettings

    bus = Bus(CommonSettings(), "test-producer")
    await bus.start()
    try:
        await bus.publish(topic, payload, correlation_id=correlation_id)
    finally:
        await bus.stop()


@pytest.fixture
def bus_tools(platform_env):
    """(collect_events, publish) bound to this test's topics (test modules cannot import conftest)."""
    return collect_events, publish


def _without_signal_in_training_rows(source: Path, target: Path, config) -> Path:
    """``source`` with the features (``seq`` included) of the rows the trainer will fit on shuffled
    among themselves: the labels, hence the trainer's split (``config``'s validation_split and
    seed), stay, the validation rows stay intact, and a model fitted on the training rows has
    nothing to learn from them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctrops_trainer.data import split_rows

    table = pq.read_table(source)
    labels = table.column("clicked").to_numpy().astype(np.float32)
    split = split_rows(labels, config.validation_split, config.downsampling, config.seed)
    order = np.arange(table.num_rows)
    order[split.train_all] = np.random.default_rng(0).permutation(split.train_all)
    shuffled = table.take(pa.array(order))
    shuffled = shuffled.set_column(shuffled.column_names.index("clicked"), "clicked", table.column("clicked"))
    pq.write_table(shuffled, target)
    return target


@pytest.fixture(scope="session")
def without_signal_in_training_rows():
    """The function above (test modules cannot import conftest): a retrain's data with nothing to learn."""
    return _without_signal_in_training_rows

"""The bus's topic check against the real broker: it names what is missing without creating it, asks
about our topics only, and keeps one client open between checks."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

from ctrops_common.bus import TopicCheck
from ctrops_common.settings import CommonSettings


async def _describe(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Topic -> partitions, for those of ``names`` that exist (asked without auto-creation)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        found = await admin.describe_topics([n for n in names if n in existing]) if existing & set(names) else []
        return {t["topic"]: len(t["partitions"]) for t in found}
    finally:
        await admin.close()


async def test_missing_topics_are_named_not_created_then_created_with_our_partitions(platform_env):
    settings = CommonSettings()
    check = TopicCheck(settings)
    try:
        missing = await check.missing()
        assert missing == check.wanted and len(missing) > 20  # a fresh prefix: none exists yet
        assert await check.missing() == missing  # asking created nothing (the broker auto-creates otherwise)
        assert await _describe(settings.kafka_bootstrap_servers, check.wanted) == {}

        assert await check.ensure() == missing
        assert await check.missing() == []
        partitions = await _describe(settings.kafka_bootstrap_servers, check.wanted)
        assert partitions == {name: settings.topic_partitions for name in check.wanted}
        assert await check.ensure() == []  # idempotent
    finally:
        await check.close()


async def test_a_check_asks_about_our_topics_only_on_one_client_kept_open(platform_env, monkeypatch):
    settings = CommonSettings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:  # other tenants' topics: a full listing would carry them all
        await admin.create_topics([NewTopic(f"{settings.topic_prefix}other.{i}", 3, 1) for i in range(50)])
    finally:
        await admin.close()
    bootstraps, asked = [], []
    real_bootstrap, real_send = AIOKafkaClient.bootstrap, AIOKafkaClient.send

    async def bootstrap(client):
        bootstraps.append(client)
        return await real_bootstrap(client)

    async def send(client, node_id, request, **kwargs):
        if type(request).__name__ == "MetadataRequest" and client in bootstraps:
            asked.append(request._topics)
        return await real_send(client, node_id, request, **kwargs)

    monkeypatch.setattr(AIOKafkaClient, "bootstrap", bootstrap)
    monkeypatch.setattr(AIOKafkaClient, "send", send)
    check = TopicCheck(settings)
    try:
        for _ in range(3):
            await check.missing()
        assert len(bootstraps) == 1  # one client for every check
        assert asked == [check.wanted] * 3  # named topics, never "all topics" (None)

        async def refused(*args, **kwargs):
            raise KafkaConnectionError("broker gone")

        monkeypatch.setattr(AIOKafkaClient, "send", refused)
        with pytest.raises(KafkaConnectionError):
            await check.missing()
        monkeypatch.setattr(AIOKafkaClient, "send", send)
        assert len(await check.missing()) == len(check.wanted)
        assert len(bootstraps) == 2  # the failed client was closed, a new one opened
    finally:
        await check.close()

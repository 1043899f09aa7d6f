"""At the end of every rebalance faust seeks the stream partitions back to their committed
offsets (what was fetched but not processed is cleared from the streams' queues then).
aiokafka's `seek_to_committed` skips a partition committed at offset 0, and one never
committed, so their records in between were never fetched again: a restarted streams
worker stalled for good (tests/faults/test_kill_streams.py, about one run in ten).
`streams.fast_drain.seek_exactly_to_committed` seeks those too; on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from pipeline.config import Settings
from pipeline.topics import TopicSpec
from streams.fast_drain import seek_exactly_to_committed

RECORDS = 10


@pytest.fixture
def two_partitions(kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]) -> tuple[str, str]:
    """A topic with RECORDS records on each of its two partitions; its name and bootstrap."""
    topic = topic_factory(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka.bootstrap})
    for partition in (0, 1):
        for n in range(RECORDS):
            producer.produce(topic.name, f"r{n}".encode(), partition=partition)
    assert producer.flush(30) == 0
    return topic.name, kafka_settings.kafka.bootstrap


async def _read_all(topic: str, bootstrap: str) -> tuple[AIOKafkaConsumer, TopicPartition, TopicPartition]:
    """A group consumer that committed offset 0 on partition 0, nothing on partition 1, and
    has fetched every record of both (its positions are at the end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"seek-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    committed_zero, never_committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer.assign([committed_zero, never_committed])
    await consumer.commit({committed_zero: 0})
    read = 0
    while read < 2 * RECORDS:
        batches = await consumer.getmany(timeout_ms=5000)
        assert batches, "the records did not arrive"
        read += sum(len(records) for records in batches.values())
    assert await consumer.position(committed_zero) == RECORDS
    assert await consumer.position(never_committed) == RECORDS
    return consumer, committed_zero, never_committed


def test_aiokafka_leaves_partitions_committed_at_zero_or_never_where_they_were(
    two_partitions: tuple[str, str],
) -> None:
    """Why the repair exists: the library's own seek moves neither partition."""

    async def scenario() -> None:
        consumer, committed_zero, never_committed = await _read_all(*two_partitions)
        try:
            committed = await consumer.seek_to_committed()
            assert committed == {committed_zero: 0, never_committed: None}
            assert await consumer.position(committed_zero) == RECORDS
            assert await consumer.position(never_committed) == RECORDS
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_the_exact_seek_moves_both_back_so_their_records_are_fetched_again(
    two_partitions: tuple[str, str],
) -> None:
    async def scenario() -> None:
        consumer, committed_zero, never_committed = await _read_all(*two_partitions)
        try:
            committed = await seek_exactly_to_committed(consumer, earliest=True)
            assert committed == {committed_zero: 0, never_committed: None}
            assert await consumer.position(committed_zero) == 0
            assert await consumer.position(never_committed) == 0
            again = 0
            while again < 2 * RECORDS:
                batches = await consumer.getmany(timeout_ms=5000)
                assert batches, "the records were not fetched again"
                again += sum(len(records) for records in batches.values())
            assert again == 2 * RECORDS
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_without_earliest_a_partition_never_committed_stays_where_it_is(
    two_partitions: tuple[str, str],
) -> None:
    """`auto_offset_reset=latest`: no committed offset means the end, not the beginning."""

    async def scenario() -> None:
        consumer, committed_zero, never_committed = await _read_all(*two_partitions)
        try:
            await seek_exactly_to_committed(consumer, earliest=False)
            assert await consumer.position(committed_zero) == 0
            assert await consumer.position(never_committed) == RECORDS
        finally:
            await consumer.stop()

    asyncio.run(scenario())

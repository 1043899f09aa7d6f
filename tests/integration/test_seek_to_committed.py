"""At the end of every rebalance faust seeks the stream partitions back to their committed
offsets (what was fetched but not processed is cleared from the streams' queues then).
aiokafka's `seek_to_committed` skips a partition committed at offset 0, and one never
committed, so their records in between were never fetched again: a restarted streams
worker stalled for good (tests/faults/test_kill_streams.py, about one run in ten).
`streams.fast_drain.seek_exactly_to_committed` seeks those too; on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

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


Seek = Callable[[AIOKafkaConsumer], Awaitable[Mapping[TopicPartition, int | None]]]


async def _read(consumer: AIOKafkaConsumer, count: int, what: str) -> None:
    """Fetch until `count` records arrived (fails naming `what` when a fetch stays empty)."""
    read = 0
    while read < count:
        batches = await consumer.getmany(timeout_ms=5000)
        assert batches, what
        read += sum(len(records) for records in batches.values())
    assert read == count


async def _seek_after_reading_all(
    topic: str, bootstrap: str, seek: Seek, *, read_again: bool = False
) -> dict[str, Any]:
    """A group consumer commits offset 0 on partition 0 and nothing on partition 1, fetches
    every record of both (its positions are then at the end), and calls `seek`: what `seek`
    returned and where each partition stands after it (and, with `read_again`, after
    fetching everything a second time)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"seek-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        committed_zero, never_committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([committed_zero, never_committed])
        await consumer.commit({committed_zero: 0})
        await _read(consumer, 2 * RECORDS, "the records did not arrive")
        assert [await consumer.position(tp) for tp in (committed_zero, never_committed)] == [RECORDS, RECORDS]
        committed = await seek(consumer)
        positions = [await consumer.position(tp) for tp in (committed_zero, never_committed)]
        if read_again:
            await _read(consumer, 2 * RECORDS, "the records were not fetched again")
        return {"committed": [committed[committed_zero], committed[never_committed]], "positions": positions}
    finally:
        await consumer.stop()


def test_aiokafka_leaves_partitions_committed_at_zero_or_never_where_they_were(
    two_partitions: tuple[str, str],
) -> None:
    """Why the repair exists: the library's own seek moves neither partition."""
    result = asyncio.run(_seek_after_reading_all(*two_partitions, lambda consumer: consumer.seek_to_committed()))
    assert result == {"committed": [0, None], "positions": [RECORDS, RECORDS]}


def test_the_exact_seek_moves_both_back_so_their_records_are_fetched_again(
    two_partitions: tuple[str, str],
) -> None:
    result = asyncio.run(
        _seek_after_reading_all(
            *two_partitions, lambda consumer: seek_exactly_to_committed(consumer, earliest=True), read_again=True
        )
    )
    assert result == {"committed": [0, None], "positions": [0, 0]}


def test_without_earliest_a_partition_never_committed_stays_where_it_is(
    two_partitions: tuple[str, str],
) -> None:
    """`auto_offset_reset=latest`: no committed offset means the end, not the beginning."""
    result = asyncio.run(
        _seek_after_reading_all(*two_partitions, lambda consumer: seek_exactly_to_committed(consumer, earliest=False))
    )
    assert result == {"committed": [0, None], "positions": [0, RECORDS]}

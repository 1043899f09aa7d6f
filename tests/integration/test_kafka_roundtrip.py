"""Produce and consume through the real broker with the project's Kafka wrappers."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.consumer import KafkaConsumer
from pipeline.kafka.producer import KafkaProducer
from pipeline.topics import TopicSpec

Record = tuple[bytes | None, bytes | None]


def _produce(settings: Settings, topic: str, records: list[Record]) -> None:
    with KafkaProducer(settings.kafka) as producer:
        for key, value in records:
            producer.produce(topic, value, key=key)
    assert producer.stats.failed == 0, producer.stats.describe_errors()
    assert producer.stats.delivered == len(records)


def _consume_processing(consumer: KafkaConsumer, want: int, timeout: float = 20.0) -> list[Record]:
    """Consume like the sink does: take a batch, 'process' it, then store its offsets."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        messages = consumer.consume(100, 0.5)
        got += [(m.key(), m.value()) for m in messages]
        consumer.store(messages)
    return got


def test_a_second_consumer_of_the_group_resumes_after_the_committed_offsets(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec], group_id: str
) -> None:
    topic = topic_factory(partitions=2).name
    _produce(kafka_settings, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)])

    with KafkaConsumer(kafka_settings.kafka, group_id) as first:
        first.subscribe([topic])
        assert len(_consume_processing(first, 10)) == 10
        first.commit()

    _produce(kafka_settings, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10, 15)])

    with KafkaConsumer(kafka_settings.kafka, group_id) as second:
        second.subscribe([topic])
        resumed = _consume_processing(second, 5)
        resumed += [(m.key(), m.value()) for m in second.consume(100, 1.0)]  # nothing more may come
    assert sorted(v for _, v in resumed if v) == [f"v{i}".encode() for i in range(10, 15)]


def _read_partition(settings: Settings, topic: str, timeout: float = 10.0) -> list[Record]:
    """Every record of partition 0 from the beginning up to its end (no group involved)."""
    with KafkaConsumer(settings.kafka, "unused-assign-only", extra={"enable.auto.commit": "false"}) as reader:
        low, high = reader.consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout) or (0, 0)
        if high <= low:
            return []
        reader.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reader.consume(100, 0.2):
                out.append((message.key(), message.value()))
                if (message.offset() or 0) >= high - 1:
                    return out
    raise AssertionError(f"did not reach offset {high - 1} of {topic} within {timeout:.0f} s")


def test_a_tombstone_erases_the_value_on_a_compacted_topic(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]
) -> None:
    # Compaction within seconds: a segment closes on the first append 100 ms after it
    # opened, and the broker's cleaner looks every second (local_kafka.py).
    topic = topic_factory(
        partitions=1,
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "600000",
        },
    ).name
    _produce(kafka_settings, topic, [(b"subject-1", b"contact details"), (b"subject-2", b"kept")])
    _produce(kafka_settings, topic, [(b"subject-1", None)])

    before = _read_partition(kafka_settings, topic)
    assert (b"subject-1", b"contact details") in before
    assert (b"subject-1", None) in before, "the tombstone is delivered as a null value"

    deadline = time.monotonic() + 30
    subject_1: list[bytes | None] = [b"contact details"]
    while b"contact details" in subject_1 and time.monotonic() < deadline:
        time.sleep(0.5)
        _produce(kafka_settings, topic, [(b"other", b"roll the segment")])
        subject_1 = [value for key, value in _read_partition(kafka_settings, topic) if key == b"subject-1"]
    assert subject_1 == [None], "compaction left only the tombstone of the erased subject"

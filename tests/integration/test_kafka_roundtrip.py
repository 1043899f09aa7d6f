"""Produce and consume through the real local broker."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.kafka.consumer import KafkaConsumer
from pipeline.kafka.producer import KafkaProducer
from pipeline.topics import TopicSpec


def _drain(consumer: KafkaConsumer, want: int, timeout: float = 20.0) -> list[tuple[bytes | None, bytes | None]]:
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        messages = consumer.consume(100, 0.5)
        consumer.store(messages)
        got += [(m.key(), m.value()) for m in messages]
    return got


def test_consumer_group_resumes_after_committed_offsets(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec], group_id: str
) -> None:
    topic = topic_factory(partitions=2).name
    with KafkaProducer(kafka_settings.kafka) as producer:
        for i in range(10):
            producer.produce(topic, f"v{i}".encode(), key=f"k{i}".encode())
    assert producer.stats.delivered == 10 and producer.stats.failed == 0

    first = KafkaConsumer(kafka_settings.kafka, group_id)
    first.subscribe([topic])
    assert len(_drain(first, 10)) == 10
    first.commit()
    first.close()

    with KafkaProducer(kafka_settings.kafka) as producer:
        for i in range(10, 15):
            producer.produce(topic, f"v{i}".encode(), key=f"k{i}".encode())

    second = KafkaConsumer(kafka_settings.kafka, group_id)
    second.subscribe([topic])
    resumed = _drain(second, 5)
    time.sleep(1.0)
    resumed += [(m.key(), m.value()) for m in second.consume(100, 1.0)]
    second.close()
    assert sorted(v for _, v in resumed if v) == [f"v{i}".encode() for i in range(10, 15)]


def test_tombstone_on_a_compacted_topic_replaces_the_value(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]
) -> None:
    topic = topic_factory(
        partitions=1,
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.001",
            "delete.retention.ms": "100",
            "min.compaction.lag.ms": "0",
        },
    ).name
    with KafkaProducer(kafka_settings.kafka) as producer:
        producer.produce(topic, b"contact details", key=b"subject-1")
        producer.produce(topic, b"kept", key=b"subject-2")
        producer.produce(topic, None, key=b"subject-1")
    assert producer.stats.failed == 0

    def read_all() -> list[tuple[bytes | None, bytes | None]]:
        consumer = Consumer(
            {**kafka_settings.kafka.as_librdkafka_dict(), "group.id": f"read-{time.time_ns()}",
             "auto.offset.reset": "earliest", "enable.auto.commit": "false"}
        )
        consumer.subscribe([topic])
        out: list[tuple[bytes | None, bytes | None]] = []
        idle_until = time.monotonic() + 5
        while time.monotonic() < idle_until:
            for message in consumer.consume(100, 0.5):
                if message.error() is None:
                    out.append((message.key(), message.value()))
                    idle_until = time.monotonic() + 1.5
        consumer.close()
        return out

    before = read_all()
    assert (b"subject-1", None) in before, "the tombstone is delivered as a null value"
    # Keep rolling segments so the cleaner can compact the closed ones.
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        with KafkaProducer(kafka_settings.kafka) as producer:
            producer.produce(topic, b"kept", key=b"subject-2")
        values = {value for key, value in read_all() if key == b"subject-1"}
        if b"contact details" not in values:
            break
        time.sleep(2)
    assert b"contact details" not in values, "compaction removed the erased value"

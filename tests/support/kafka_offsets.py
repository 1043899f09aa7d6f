"""Offsets on the real broker, as tests need them: where topics end now, whether a consumer
group has committed up to a point, and positioning a new group at the end of its inputs
so that it reads only what a test produces next."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.topics import TopicSpec


def ensure_input_topics(settings: Settings, specs: list[TopicSpec]) -> None:
    """Create the topics of `specs` that are missing; an existing topic is left alone."""
    KafkaAdmin(settings.kafka).create_topics(specs)


def high_watermark(consumer: Consumer, topic: str, partition: int) -> int:
    """The end offset; retried for 30 s while a just-created topic has no leader yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def end_positions(bootstrap: str, specs: Iterable[TopicSpec]) -> list[TopicPartition]:
    """The end offset of every partition of `specs` (as many as each spec declares)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        return [
            TopicPartition(spec.name, partition, high_watermark(consumer, spec.name, partition))
            for spec in specs
            for partition in range(spec.partitions)
        ]
    finally:
        consumer.close()


def start_group_at_end(bootstrap: str, group: str, specs: Iterable[TopicSpec]) -> None:
    """Commit the end offsets of `specs` for `group`, so a worker in it reads only what comes
    next; retried for up to a minute while a fresh broker has not loaded the group's
    coordinator yet (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    offsets = end_positions(bootstrap, specs)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def end_offsets(bootstrap: str, names: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> end offset of every partition of `names` that holds a message."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}"})
    try:
        metadata = probe.list_topics(timeout=10)
        out = {}
        for name in names:
            for partition in metadata.topics[name].partitions:
                _low, high = probe.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                if high > 0:
                    out[(name, partition)] = high
        return out
    finally:
        probe.close()


def topic_end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """partition -> end offset of `topic` on the broker of `settings`, every partition;
    retried while a topic created a moment ago has no leaders yet."""
    consumer = Consumer({**settings.kafka.as_librdkafka_dict(), "group.id": "offsets-probe", "log_level": 3})
    try:
        for _ in range(50):
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            except KafkaException:
                time.sleep(0.2)
        raise AssertionError(f"no end offsets for {topic}")
    finally:
        consumer.close()


def lagging_partitions(bootstrap: str, group: str, wanted: dict[tuple[str, int], int]) -> dict[str, int]:
    """Partitions whose committed offset in `group` is still below `wanted` (without joining the group)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = probe.committed([TopicPartition(t, p) for t, p in wanted], timeout=10)
    except KafkaException as exc:  # e.g. the group's coordinator is not ready yet
        return {"committed offsets unavailable": exc.args[0].code()}
    finally:
        probe.close()
    return {
        f"{tp.topic}[{tp.partition}]": tp.offset for tp in committed if tp.offset < wanted[(tp.topic, tp.partition)]
    }

"""The subject directory (streams/subject_directory.py) against the real broker: a lookup
returns exactly the current SubjectRecords holding the keys (by their own or a linked
key), never a tombstoned or superseded one, sees records written just before it, and a
directory started afresh (a restarted worker) answers the same."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.producer import KafkaProducer
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.topics import TopicSpec
from streams.subject_directory import SubjectDirectory, SubjectLookupError, end_offsets

pytestmark = pytest.mark.kafka

ENCODE = AvroSerializer("SubjectRecord")


def _record(key: str, linked: list[str], email: str | None = None) -> dict[str, Any]:
    return {
        "subject_key": key,
        "linked_keys": linked,
        "name": None,
        "email": email,
        "phone": None,
        "person_number": None,
        "app_username": None,
        "postal_address": None,
        "updated_at": datetime.now(UTC).replace(microsecond=0),
        "schema_version": 1,
    }


@pytest.fixture
def subjects(topic_factory: Callable[..., TopicSpec]) -> TopicSpec:
    return topic_factory(partitions=3, config={"cleanup.policy": "compact"}, prefix="subjects")


@pytest.fixture
def write(kafka_settings: Settings, subjects: TopicSpec) -> Iterator[Callable[..., None]]:
    producer = KafkaProducer(kafka_settings.kafka, extra={"partitioner": "murmur2_random"})

    def send(key: str, record: dict[str, Any] | None) -> None:
        producer.produce(subjects.name, ENCODE(record) if record is not None else None, key=key.encode())
        stats = producer.flush(30)
        assert not stats.failed

    yield send
    producer.close()


def _directory(kafka_settings: Settings, subjects: TopicSpec) -> SubjectDirectory:
    return SubjectDirectory(kafka_settings.kafka, decode=AvroDeserializer(), topic=subjects.name, timeout=120)


def test_lookups_return_exactly_the_current_records_holding_the_keys(
    kafka_settings: Settings, subjects: TopicSpec, write: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex
    a, b, c, phone, other = (f"{name}-{tag}" for name in ("a", "b", "c", "phone", "other"))
    write(a, _record(a, [phone], email=f"a-{tag}@example.fi"))
    write(b, _record(b, [phone]))
    write(c, _record(c, [other]))
    directory = _directory(kafka_settings, subjects)
    try:
        assert set(directory.find([phone])) == {a, b}
        assert directory.find([a])[a]["email"] == f"a-{tag}@example.fi"
        assert set(directory.find([c, f"nobody-{tag}"])) == {c}
        assert directory.find([f"nobody-{tag}"]) == {}

        # Written after the directory was built: the next lookup sees them.
        write(a, None)  # a tombstone
        write(b, _record(b, [other]))  # b no longer holds the phone
        write(c, _record(c, [other], email=f"c-{tag}@example.fi"))
        assert directory.find([phone]) == {}
        assert set(directory.find([other])) == {b, c}
        assert directory.find([c])[c]["email"] == f"c-{tag}@example.fi"
        assert directory.find([a]) == {}
    finally:
        directory.close()


def test_a_directory_started_afresh_finds_the_same_records(
    kafka_settings: Settings, subjects: TopicSpec, write: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex
    keys = [f"k{i}-{tag}" for i in range(30)]
    shared = f"shared-{tag}"
    for i, key in enumerate(keys):
        write(key, _record(key, [shared] if i % 3 == 0 else []))
    for key in keys[::6]:
        write(key, None)
    expected = {key for i, key in enumerate(keys) if i % 3 == 0 and i % 6 != 0}

    first = _directory(kafka_settings, subjects)
    try:
        assert set(first.find([shared])) == expected
        assert first.records_read == len(expected)  # a lookup, not a read of the topic
    finally:
        first.close()
    again = _directory(kafka_settings, subjects)  # a restarted worker: the index is rebuilt from the topic
    try:
        assert set(again.find([shared])) == expected
        assert set(again.find(keys)) == {key for i, key in enumerate(keys) if i % 6 != 0}
    finally:
        again.close()


def test_the_tail_indexes_records_without_decoding_them(
    kafka_settings: Settings, subjects: TopicSpec, write: Callable[..., None]
) -> None:
    """The tail reads only the keys (streams/held_keys.py): the one full decode of a record
    is the lookup's own, of the records it returns."""
    tag = uuid.uuid4().hex
    keys = [f"k{i}-{tag}" for i in range(12)]
    shared = f"shared-{tag}"
    for i, key in enumerate(keys):
        write(key, _record(key, [shared] if i % 4 == 0 else []))
    decoded: list[bytes | None] = []

    class Counting(AvroDeserializer):
        def __call__(self, data: bytes | None, ctx: object = None) -> Any:
            decoded.append(data)
            return super().__call__(data, ctx)

    directory = SubjectDirectory(kafka_settings.kafka, decode=Counting(), topic=subjects.name, timeout=120)
    try:
        assert set(directory.find([shared])) == set(keys[::4])
        assert len(decoded) == 3
    finally:
        directory.close()


def test_end_offsets_are_the_partitions_current_ends(
    kafka_settings: Settings, subjects: TopicSpec, write: Callable[..., None]
) -> None:
    """One request for all partitions, asked of the broker each time: empty partitions end
    at 0, a record written just before counts, a topic that does not exist is an error."""
    reader = Consumer({**kafka_settings.kafka.as_librdkafka_dict(), "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        assert end_offsets(reader, subjects.name, [0, 1, 2], 60) == {0: 0, 1: 0, 2: 0}
        tag = uuid.uuid4().hex
        for i in range(7):
            write(f"k{i}-{tag}", _record(f"k{i}-{tag}", []))
        ends = end_offsets(reader, subjects.name, [0, 1, 2], 60)
        assert sum(ends.values()) == 7
        assert ends == {p: reader.get_watermark_offsets(TopicPartition(subjects.name, p), timeout=60)[1] for p in ends}
        with pytest.raises(SubjectLookupError):
            end_offsets(reader, f"missing-{tag}", [0], 10)
    finally:
        reader.close()

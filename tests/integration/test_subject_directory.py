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

from pipeline.config import Settings
from pipeline.kafka.producer import KafkaProducer
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.topics import TopicSpec
from streams.subject_directory import SubjectDirectory

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

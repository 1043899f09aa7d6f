"""Reading topics of the real broker back, each read under a consumer group of its own
that commits nothing, so reads never disturb a worker or another test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.config import Settings
from tests.support.kafka_offsets import topic_end_offsets

T = TypeVar("T")


class Received(NamedTuple):
    """A message read back: its key, value and headers (values as bytes)."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def header_bytes(message: Message) -> dict[str, bytes]:
    """The headers of `message` as a dict of bytes (a missing value as b"")."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """The first `expected` messages of `topic` from its beginning (fewer if `timeout` s pass first)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message)
        return got
    finally:
        consumer.close()


def read_since(settings: Settings, topic: str, start: dict[int, int]) -> list[Received]:
    """Every message of `topic` after `start` (partition -> offset, from
    `topic_end_offsets`) up to the current end offsets; fails the test after 60 s."""
    end = topic_end_offsets(settings, topic)
    want = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    if not want:
        return []
    config = {**settings.kafka.as_librdkafka_dict(), "group.id": "reader", "enable.auto.commit": "false"}
    consumer = Consumer({**config, "log_level": 3})
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in want])
    out: list[Received] = []
    done: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                out.append(Received(message.key(), message.value(), header_bytes(message)))
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None and offset >= want[partition] - 1:
                    done.add(partition)
    finally:
        consumer.close()
    assert len(done) == len(want), f"did not read {topic} to its end within 60 s"
    return out


def consume_until(
    bootstrap: str,
    start: list[TopicPartition],
    done: Callable[[list[T]], bool],
    convert: Callable[[Message], T],
    *,
    timeout: float = 60.0,
    required: bool = True,
) -> list[T]:
    """The messages from `start` on, each passed through `convert`, until `done(converted)`.

    After `timeout` seconds a `required` read fails the test; otherwise what arrived is
    returned for the caller's assertions to judge.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign(start)
    got: list[T] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(got):
            if time.monotonic() >= deadline:
                assert not required, f"timed out; read {len(got)} message(s)"
                break
            for message in consumer.consume(500, timeout=0.5):
                if not message.error():
                    got.append(convert(message))
        return got
    finally:
        consumer.close()

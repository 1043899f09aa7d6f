"""streams.delivery_window on the real broker: a batch's `done()` runs only once its
messages are delivered (they are on the broker when it runs), the next batch is queued
while one waits, and a batch the broker refuses ends in `fail` with its `done()` never
run (the worker would exit unacked)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import NoReturn

import pytest

from pipeline.config import KafkaConnection, Settings
from pipeline.kafka.producer import KafkaProducer
from pipeline.topics import TopicSpec
from records.local_kafka import free_port
from streams.app import OUTPUT_PRODUCER
from streams.delivery_window import DeliveryWindow
from streams.outgoing import Outgoing
from tests.support.kafka_offsets import topic_end_offsets


class _Failed(Exception):
    pass


def _fail(reason: str) -> NoReturn:
    raise _Failed(reason)


def _batch(topic: str, count: int, size: int = 16) -> list[Outgoing]:
    # random values: the producer's compression does not shrink them
    return [Outgoing(topic, f"k{i}".encode(), os.urandom(size), (("h", b"1"),)) for i in range(count)]


def test_each_batch_is_done_after_its_delivery_while_the_next_is_queued(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]
) -> None:
    topic = topic_factory(partitions=3).name
    producer = KafkaProducer(kafka_settings.kafka, extra=OUTPUT_PRODUCER)
    window = DeliveryWindow(producer, depth=2, timeout_s=60, fail=_fail)
    done: list[tuple[str, int]] = []

    def on_broker() -> int:
        return sum(topic_end_offsets(kafka_settings, topic).values())

    async def run() -> list[list[tuple[str, int]]]:
        states = []
        await window.send(_batch(topic, 500), lambda: done.append(("first", on_broker())))
        states.append(list(done))  # returned before the first batch's reports: nothing done yet
        await window.send(_batch(topic, 300), lambda: done.append(("second", on_broker())))
        states.append(list(done))  # the first had to be done for send to return (the second may be too)
        await window.send([], lambda: done.append(("empty", on_broker())))
        await window.drain()
        states.append(list(done))
        return states

    try:
        before_first, after_second_send, after_drain = asyncio.run(run())
    finally:
        window.close()
        producer.close()

    assert before_first == []
    assert "first" in dict(after_second_send)  # the second may be done too, in either order
    assert dict(after_second_send)["first"] >= 500  # done ran once the first batch was delivered
    assert sorted(name for name, _ in after_drain) == ["empty", "first", "second"]
    assert dict(after_drain)["second"] == 800


def test_a_batch_not_delivered_in_time_fails_and_is_never_done() -> None:
    # nothing listens there: the messages stay queued
    producer = KafkaProducer(KafkaConnection(bootstrap=f"127.0.0.1:{free_port()}"), extra=OUTPUT_PRODUCER)
    window = DeliveryWindow(producer, depth=2, timeout_s=1, fail=_fail)
    done: list[str] = []

    async def run() -> None:
        await window.send(_batch("nowhere", 2), lambda: done.append("undelivered"))
        await window.drain()

    try:
        with pytest.raises(_Failed, match=r"did not complete within 1 s \(2 message\(s\) left\)"):
            asyncio.run(run())
    finally:
        window.close()
    assert done == []


def test_a_batch_the_broker_refuses_fails_and_is_never_done(
    kafka_settings: Settings, topic_factory: Callable[..., TopicSpec]
) -> None:
    # the topic takes records of at most 1 KiB: the broker refuses the batch's 4 KiB one
    topic = topic_factory(partitions=1, config={"max.message.bytes": "1024"}).name
    producer = KafkaProducer(kafka_settings.kafka, extra=OUTPUT_PRODUCER)
    window = DeliveryWindow(producer, depth=2, timeout_s=60, fail=_fail)
    done: list[str] = []

    async def run() -> None:
        await window.send(_batch(topic, 3, size=4096), lambda: done.append("refused"))
        await window.drain()

    try:
        with pytest.raises(_Failed, match="delivery failed"):
            asyncio.run(run())
    finally:
        window.close()
        producer.close()
    assert done == []

"""A broker that stops answering without closing its connections (the process frozen with
SIGSTOP, as in a long GC pause or a stalled VM): librdkafka would wait for a synchronous
commit's result and for a consumer's close with no deadline of its own. The consumer
wrapper bounds both, so the sink's thread is never held by a stuck group coordinator
(the wedge seen after broker restarts: ClickHouseSink replaces a consumer given up on)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Message

from pipeline.config import KafkaConnection, load_settings
from pipeline.exceptions import KafkaClientError
from pipeline.kafka.admin import KafkaAdmin
from pipeline.kafka.bounded_call import WEDGED
from pipeline.kafka.consumer import KafkaConsumer, abandoned_consumers
from pipeline.kafka.producer import KafkaProducer
from pipeline.topics import TopicSpec
from records.local_kafka import LocalBroker

DEADLINE_S = 3.0
SLACK_S = 2.0  # the thread hand-over on a loaded machine


@pytest.fixture
def frozen_later(own_broker: LocalBroker) -> Iterator[int]:
    """The broker's pid; whatever the test did, the broker is thawed before it is stopped."""
    pid = own_broker.status().pid
    assert pid is not None
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def _topic_of(broker: LocalBroker, name: str, count: int) -> KafkaConnection:
    """A one-partition topic on `broker` holding `count` messages; the connection to it."""
    connection = dataclasses.replace(load_settings({"KAFKA_BOOTSTRAP": broker.bootstrap}).kafka)
    KafkaAdmin(connection).create_topics([TopicSpec(name, "test key", "test topic", 1, {})])
    with KafkaProducer(connection) as producer:
        for i in range(count):
            producer.produce(name, f"v{i}".encode(), key=f"k{i}".encode())
    return connection


def _take(consumer: KafkaConsumer, count: int) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.consume(100, 0.5)
    assert len(got) == count
    return got


def _commit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kafka-offset commit"]


def test_a_commit_and_close_on_a_frozen_broker_give_up_at_their_deadline(
    own_broker: LocalBroker, frozen_later: int
) -> None:
    connection = _topic_of(own_broker, "frozen.t", 20)
    consumer = KafkaConsumer(connection, "frozen-group")
    consumer.subscribe(["frozen.t"])
    consumer.store(_take(consumer, 20))
    raw = consumer.consumer  # closed by the test once the broker is back

    os.kill(frozen_later, signal.SIGSTOP)
    abandoned = abandoned_consumers()
    started = time.monotonic()
    with pytest.raises(KafkaClientError) as commit_error:
        consumer.commit(timeout=DEADLINE_S)
    waited = time.monotonic() - started
    assert commit_error.value.code == WEDGED
    assert DEADLINE_S <= waited < DEADLINE_S + SLACK_S, f"commit returned after {waited:.1f} s"
    assert _commit_threads(), "the commit returned: the broker was not frozen"

    started = time.monotonic()
    with pytest.raises(KafkaClientError) as close_error:
        consumer.close(timeout=DEADLINE_S)  # a client under a stuck commit is not closed
    assert close_error.value.code == WEDGED
    assert time.monotonic() - started < SLACK_S
    assert abandoned_consumers() == abandoned + 1

    os.kill(frozen_later, signal.SIGCONT)
    threads = _commit_threads()
    for thread in threads:
        thread.join(90)  # the stuck commit ends at the latest at librdkafka's request timeout
    assert not any(t.is_alive() for t in threads)
    raw.close()  # the test's own clean-up: the abandoned client is closable once thawed


def test_a_bounded_commit_on_a_live_broker_commits(own_broker: LocalBroker) -> None:
    connection = _topic_of(own_broker, "live.t", 5)
    with KafkaConsumer(connection, "live-group") as first:
        first.subscribe(["live.t"])
        first.store(_take(first, 5)[:3])
        first.commit(timeout=DEADLINE_S)
        first.close(timeout=DEADLINE_S)
    with KafkaConsumer(connection, "live-group") as second:
        second.subscribe(["live.t"])
        assert [m.value() for m in _take(second, 2)] == [b"v3", b"v4"]

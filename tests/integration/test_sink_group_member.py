"""The sink's group membership (sink/group_member.py) on the real broker: partitions are
read from their committed offsets, a consume call in which a rebalance callback ran keeps
none of its messages, and a revocation is handed to the loop with its partitions (their
lag gauges removed). The rebalances under load and broker restarts: tests/faults/."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.topics import TopicSpec
from sink.batch import KafkaMessage
from sink.exceptions import KafkaSinkError
from sink.group_member import GroupMember, partition_of
from sink.metrics import SinkMetrics
from sink.sink_options import SinkOptions

WAIT_S = 120.0  # generous: rebalances on a loaded machine take seconds


def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in per_partition.items():
        for n in range(count):
            producer.produce(topic, key=str(n), value=b"x", partition=partition)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committer.commit(offsets=offsets, asynchronous=False)
    finally:
        committer.close()


class _Loop:
    """What the sink's loop hands a member: the partitions revoked and lost, as they come."""

    def __init__(self) -> None:
        self.revoked: list[tuple[str, int]] = []
        self.lost: list[tuple[str, int]] = []

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.revoked += [(tp.topic, tp.partition) for tp in partitions]

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        self.lost += [(tp.topic, tp.partition) for tp in partitions]


@pytest.fixture
def members(kafka_settings: Settings, group_id: str) -> Iterator[Callable[[str], tuple[GroupMember, _Loop]]]:
    """Members of one new group (each with its own loop stand-in), left after the test."""
    made: list[GroupMember] = []

    def make(topic: str) -> tuple[GroupMember, _Loop]:
        loop = _Loop()
        options = SinkOptions(group_id=group_id, lag_every_s=0.0)
        member = GroupMember(
            kafka_settings.kafka,
            options,
            [topic],
            metrics=SinkMetrics.create(CollectorRegistry()),
            revoked=loop.on_revoked,
            lost=loop.on_lost,
        )
        made.append(member)
        return member, loop

    yield make
    for member in made:
        member.leave()


def _assigned(member: GroupMember) -> set[tuple[str, int]]:
    return {(tp.topic, tp.partition) for tp in member.consumer.consumer.assignment()}


def _lag_partitions(member: GroupMember) -> set[str]:
    return {
        sample.labels["partition"]
        for family in member.metrics.consumer_lag.collect()
        for sample in family.samples
    }


def test_partitions_are_read_from_the_commit_and_a_call_that_served_the_assignment_keeps_nothing(
    kafka_bootstrap: str,
    topic_factory: Callable[..., TopicSpec],
    members: Callable[[str], tuple[GroupMember, _Loop]],
    group_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory(partitions=2).name
    _produce(kafka_bootstrap, topic, {0: 10, 1: 10})
    _commit(kafka_bootstrap, group_id, [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7)])
    member, _ = members(topic)
    caplog.set_level(logging.INFO, logger="sink.group_member")

    taken: dict[int, list[int]] = {0: [], 1: []}
    calls_with_assignment: list[list[KafkaMessage]] = []
    member.start()
    deadline = time.monotonic() + WAIT_S
    while len(taken[0]) < 6 or len(taken[1]) < 3:
        assert time.monotonic() < deadline, f"taken so far: {taken}"
        member.settle()
        before = len(caplog.records)
        messages = member.consume(100, timeout=0.5)
        if any(r.getMessage().startswith("assigned ") for r in caplog.records[before:]):
            calls_with_assignment.append(messages)
        for message in messages:
            taken[partition_of(message)[1]].append(message.offset() or 0)

    assert taken == {0: [4, 5, 6, 7, 8, 9], 1: [7, 8, 9]}  # from the commit, each once
    assert calls_with_assignment, "no consume call served the assignment"
    assert all(messages == [] for messages in calls_with_assignment)

    member.leave()
    member.leave()  # idempotent
    with pytest.raises(KafkaSinkError, match="not running"):
        member.consume(1, timeout=0.1)


def test_a_revocation_is_handed_to_the_loop_with_its_partitions_and_their_lag_gauges_go(
    kafka_bootstrap: str,
    topic_factory: Callable[..., TopicSpec],
    members: Callable[[str], tuple[GroupMember, _Loop]],
) -> None:
    topic = topic_factory(partitions=2).name
    _produce(kafka_bootstrap, topic, {0: 100, 1: 100})
    first, first_loop = members(topic)
    first.start()
    deadline = time.monotonic() + WAIT_S
    while len(_assigned(first)) < 2 or len(_lag_partitions(first)) < 2:
        assert time.monotonic() < deadline, "the first member never got both partitions"
        first.settle()
        first.consume(1, timeout=0.2)
        first.observe_lag({})
    assert _lag_partitions(first) == {"0", "1"}

    second, second_loop = members(topic)
    second.start()
    revoking_calls: list[list[KafkaMessage]] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    deadline = time.monotonic() + WAIT_S
    while not first_loop.revoked or not _assigned(second):
        assert time.monotonic() < deadline, f"no revocation: first holds {_assigned(first)}"
        # traffic on both partitions, so that messages are queued when the revocation comes
        for partition in (0, 1):
            for n in range(20):
                producer.produce(topic, key=str(n), value=b"x", partition=partition)
        producer.poll(0)
        first.settle()
        revoked_before = len(first_loop.revoked)
        messages = first.consume(1000, timeout=0.2)
        if len(first_loop.revoked) > revoked_before:
            revoking_calls.append(messages)
        second.settle()
        second.consume(1, timeout=0.05)
    assert producer.flush(30) == 0

    assert set(first_loop.revoked) == _assigned(second)
    assert _assigned(first) | _assigned(second) == {(topic, 0), (topic, 1)}
    assert revoking_calls and all(messages == [] for messages in revoking_calls)
    assert _lag_partitions(first) == {str(p) for _, p in _assigned(first)}  # the revoked one's gauge is gone
    assert first_loop.lost == [] and second_loop.revoked == []

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


def test_a_commit_inside_a_revocation_returns_at_once_and_the_next_owner_reads_from_it(
    kafka_bootstrap: str, kafka_settings: Settings, topic_factory: Callable[..., TopicSpec], group_id: str
) -> None:
    # The sink's loop commits the batch in hand inside the revocation callback. With a
    # deadline (a helper thread) that commit waited for the consume call serving the
    # callback until the deadline, and the group with it (sink/batch_offsets.py).
    topic = topic_factory(partitions=2).name
    _produce(kafka_bootstrap, topic, {0: 50, 1: 50})
    held: dict[tuple[str, int], int] = {}
    commit_s: list[float] = []

    def on_revoked(partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        member.commit(held)
        commit_s.append(time.monotonic() - started)

    member = GroupMember(
        kafka_settings.kafka,
        SinkOptions(group_id=group_id, commit_timeout_s=10.0),
        [topic],
        metrics=SinkMetrics.create(CollectorRegistry()),
        revoked=on_revoked,
        lost=lambda partitions: None,
    )
    visitor = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    try:
        member.start()
        deadline = time.monotonic() + WAIT_S
        while held != {(topic, 0): 50, (topic, 1): 50}:  # every message in hand, none committed
            assert time.monotonic() < deadline, f"held so far: {held}"
            member.settle()
            for message in member.consume(100, timeout=0.2):
                held[partition_of(message)] = (message.offset() or 0) + 1

        joined = time.monotonic()
        visitor.subscribe([topic])
        while not visitor.assignment():
            assert time.monotonic() < joined + WAIT_S, "the visiting member got no partition"
            member.settle()
            member.consume(100, timeout=0.1)
            visitor.poll(0.1)
        handover_s = time.monotonic() - joined
        taken = visitor.assignment()
        committed = visitor.committed(taken, timeout=10)
    finally:
        visitor.close()
        member.leave()

    assert commit_s and max(commit_s) < 2.0, f"commits inside the revocation took {commit_s} s"
    assert handover_s < 20.0, f"the rebalance took {handover_s:.1f} s"
    assert {tp.partition: tp.offset for tp in committed} == {tp.partition: 50 for tp in taken}
    assert member.failure is None


def test_the_revocation_served_by_leaving_is_not_handed_to_the_loop(
    topic_factory: Callable[..., TopicSpec], members: Callable[[str], tuple[GroupMember, _Loop]]
) -> None:
    # Closing serves a last revocation on the closing (deadline) thread; the loop has
    # written or dropped its batch before leaving and must not be re-entered from there.
    topic = topic_factory(partitions=1).name
    member, loop = members(topic)
    member.start()
    deadline = time.monotonic() + WAIT_S
    while not _assigned(member):
        assert time.monotonic() < deadline, "never assigned"
        member.settle()
        member.consume(1, timeout=0.2)
    member.leave()
    assert loop.revoked == [] and loop.lost == []

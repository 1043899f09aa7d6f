"""streams.fast_drain against the real local broker: a faust app in this process drains a
topic through `FastDrainConsumer`; every message reaches the agent once, in partition
order, the group commits every acked offset, and the drain creates asyncio tasks per
fetch, not per message (faust's own drain creates at least four per message); records of a
routed topic reach their handler a fetch at a time, and only the offsets it acked are
committed.

Counting tasks, not measuring time: the figure does not depend on the machine's load.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import faust
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.topics import TopicSpec
from streams.fast_drain import FastDrainConsumer, route_batches, use_fast_drain

pytestmark = pytest.mark.kafka

MESSAGES = 2000
PARTITIONS = 2


class _TaskCounter:
    """An event-loop task factory that counts the tasks created."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        self.created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)


def _produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(MESSAGES):
        producer.produce(topic, f"value-{i}".encode(), key=str(i % 17).encode())
    assert producer.flush(30) == 0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def _fast_drain_app(
    bootstrap: str, topic: str, group: str, tmp_dir: str, **settings: Any
) -> tuple[faust.App, faust.TopicT]:
    """A faust app in group `group` consuming `topic` through the fast drain; its source topic."""
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tmp_dir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=PARTITIONS,
        **settings,
    )
    use_fast_drain(app)
    return app, app.topic(topic, key_serializer="raw", value_serializer="raw")


async def _drain(bootstrap: str, topic: str, group: str, tmp_dir: str) -> tuple[dict[int, list[int]], int]:
    """Run a faust app with the fast drain until every message is in; (offsets seen per
    partition, tasks created between the first and the last message)."""
    app, source = _fast_drain_app(bootstrap, topic, group, tmp_dir, broker_commit_every=100)
    seen: dict[int, list[int]] = defaultdict(list)
    counter = _TaskCounter()
    marks: dict[str, int] = {}
    done = asyncio.Event()

    async def agent(stream: faust.StreamT) -> None:
        async for events in stream.take_events(250, within=0.2):  # type: ignore[attr-defined]
            for event in events:
                seen[event.message.partition].append(event.message.offset)
            marks.setdefault("first", counter.created)
            if sum(len(v) for v in seen.values()) >= MESSAGES:
                marks["last"] = counter.created
                done.set()

    app.agent(source, name="drain")(agent)
    asyncio.get_running_loop().set_task_factory(counter)
    await app.start()
    try:
        assert isinstance(app.consumer, FastDrainConsumer)
        await asyncio.wait_for(done.wait(), timeout=180)
        # the commit timer and commit_every commit the acked offsets
        for _ in range(300):
            if _committed(bootstrap, group, topic) >= MESSAGES:
                break
            await asyncio.sleep(0.2)
    finally:
        await app.stop()
    return seen, marks["last"] - marks["first"]


def test_fast_drain_delivers_every_message_once_with_few_tasks(
    kafka_bootstrap: str, topic_factory: Callable[..., TopicSpec], tmp_path: Any
) -> None:
    topic = topic_factory(partitions=PARTITIONS).name
    _produce(kafka_bootstrap, topic)
    group = f"test-fast-drain-{uuid.uuid4().hex[:8]}"

    seen, tasks = asyncio.run(_drain(kafka_bootstrap, topic, group, str(tmp_path)))

    assert sum(len(offsets) for offsets in seen.values()) == MESSAGES
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))  # each once, in partition order
    assert _committed(kafka_bootstrap, group, topic) == MESSAGES  # every acked offset committed
    # faust's per-message drain: >= 4 tasks per message (8,000 here); per fetch: a few hundred
    assert tasks < MESSAGES // 4, f"{tasks} tasks created for {MESSAGES} messages"


async def _drain_across_a_rebalance(bootstrap: str, topic: str, group: str, tmp_dir: str) -> dict[str, Any]:
    """A faust app with the fast drain whose group starts committed at offset 0 (what a
    restarted worker meets when its predecessor never committed): the messages are produced
    while the app says it is rebalancing, then the rebalance ends. What the agent saw in
    each phase."""
    app, source = _fast_drain_app(bootstrap, topic, group, tmp_dir)
    seen: list[tuple[int, int]] = []
    ready = asyncio.Event()

    async def agent(stream: faust.StreamT) -> None:
        ready.set()
        async for events in stream.take_events(250, within=0.2):  # type: ignore[attr-defined]
            seen.extend((event.message.partition, event.message.offset) for event in events)

    app.agent(source, name="drain")(agent)
    await app.start()
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
        while not app.consumer.assignment():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the recovery that ends the first rebalance is over
        app.rebalancing = True  # as between a revocation and the recovery's end
        _produce(bootstrap, topic)
        await asyncio.sleep(5.0)  # several fetches return in the meantime
        during = len(seen)
        app.rebalancing = False
        for _ in range(600):
            if len(seen) >= MESSAGES:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # nothing more arrives
    finally:
        await app.stop()
    return {"during": during, "seen": seen}


def test_records_fetched_while_rebalancing_are_held_back_then_delivered_once(
    kafka_bootstrap: str, topic_factory: Callable[..., TopicSpec], tmp_path: Any
) -> None:
    """faust clears the streams' queues when a rebalance ends: a record delivered during one
    is lost. The drain holds such records back and seeks their partitions to the committed
    offset (0 here, where aiokafka's own seek does nothing), so each arrives once, after."""
    topic = topic_factory(partitions=PARTITIONS).name
    group = f"test-fast-drain-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(PARTITIONS)], asynchronous=False)
    committer.close()

    result = asyncio.run(_drain_across_a_rebalance(kafka_bootstrap, topic, group, str(tmp_path)))

    assert result["during"] == 0, "records were delivered while the app was rebalancing"
    seen = result["seen"]
    assert len(seen) == MESSAGES and len(set(seen)) == MESSAGES  # every message, once


async def _route(bootstrap: str, topic: str, group: str, tmp_dir: str, *, ack_up_to: int) -> dict[str, Any]:
    """A faust app with no agent on `topic`, its records routed to a handler
    (`route_batches`) that acks the first `ack_up_to` offsets of each partition and holds
    the rest. What the handler got, and the group's committed total after a commit."""
    app, _ = _fast_drain_app(bootstrap, topic, group, tmp_dir)
    calls: list[list[tuple[int, int]]] = []
    held: list[Any] = []

    async def handler(messages: list[Any]) -> None:
        unacked = app.consumer.unacked
        assert all(message in unacked for message in messages)  # tracked before the handler runs
        calls.append([(message.partition, message.offset) for message in messages])
        for message in messages:
            if message.offset < ack_up_to:
                app.consumer.ack(message)
            else:
                held.append(message)

    route_batches(app, [topic], handler)
    await app.start()
    try:
        for _ in range(900):
            if sum(len(call) for call in calls) >= MESSAGES:
                break
            await asyncio.sleep(0.2)
        await app.consumer.commit()
        committed = _committed(bootstrap, group, topic)
        held_count = len(held)
        for message in held:  # a stopping app waits until every tracked record is acked
            app.consumer.ack(message)
    finally:
        await app.stop()
    return {"calls": calls, "committed": committed, "held": held_count}


def test_routed_records_reach_their_handler_a_fetch_at_a_time_and_only_acked_offsets_are_committed(
    kafka_bootstrap: str, topic_factory: Callable[..., TopicSpec], tmp_path: Any
) -> None:
    topic = topic_factory(partitions=PARTITIONS).name
    _produce(kafka_bootstrap, topic)
    group = f"test-fast-drain-{uuid.uuid4().hex[:8]}"
    ack_up_to = 300  # per partition

    result = asyncio.run(_route(kafka_bootstrap, topic, group, str(tmp_path), ack_up_to=ack_up_to))

    calls = result["calls"]
    seen = [pair for call in calls for pair in call]
    assert len(seen) == MESSAGES and len(set(seen)) == MESSAGES  # every message, once
    for partition in range(PARTITIONS):
        offsets = [offset for p, offset in seen if p == partition]
        assert offsets == list(range(len(offsets)))  # in partition order
    assert len(calls) < MESSAGES // 10, f"{len(calls)} handler calls for {MESSAGES} messages"
    # the commit stops at the first offset the handler did not ack, in each partition
    assert result["committed"] == ack_up_to * PARTITIONS
    assert result["held"] == MESSAGES - ack_up_to * PARTITIONS


def test_route_batches_needs_the_fast_drain(tmp_path: Any) -> None:
    app = faust.App("test-no-fast-drain", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path))

    async def handler(messages: list[Any]) -> None:
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="use_fast_drain"):
        route_batches(app, ["any-topic"], handler)

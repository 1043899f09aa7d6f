"""streams.fast_drain against the real local broker: a faust app in this process drains a
topic through `FastDrainConsumer`; every message reaches the agent once, in partition
order, the group commits every acked offset, and the drain creates asyncio tasks per
fetch, not per message (faust's own drain creates at least four per message).

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
from streams.fast_drain import FastDrainConsumer, use_fast_drain

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


async def _drain(bootstrap: str, topic: str, group: str, tmp_dir: str) -> tuple[dict[int, list[int]], int]:
    """Run a faust app with the fast drain until every message is in; (offsets seen per
    partition, tasks created between the first and the last message)."""
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tmp_dir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        topic_partitions=PARTITIONS,
    )
    use_fast_drain(app)
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
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
    asyncio.get_running_loop().set_task_factory(counter)  # type: ignore[arg-type]
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

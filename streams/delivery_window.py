"""Batches' output in flight on one librdkafka producer, acknowledged only once delivered.

`send(messages, done)` queues every message of a batch (produce() only queues: no
future and no task per message), then a flush in a thread waits until every delivery
report is in; `done()` runs after that, on the event loop. Up to `depth` batches wait
for their reports at a time, so the stage builds the next batch meanwhile instead of
idling (with one batch at a time the worker's main thread waited 16% of the time: py-spy
with idle samples, issue 15). `send` returns once fewer than `depth` batches wait.

A failed delivery or a flush past `timeout_s` calls `fail(reason)`, which must not
return (the streams worker exits): faust would otherwise commit offsets whose output
never reached Kafka. librdkafka's flush waits for every queued message, so a flush may
also cover a later batch's messages; each batch still runs `done()` only after its own
messages were delivered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import NoReturn

from pipeline.exceptions import KafkaClientError
from pipeline.kafka.producer import KafkaProducer
from streams.outgoing import Outgoing


class DeliveryWindow:
    def __init__(
        self, producer: KafkaProducer, *, depth: int, timeout_s: float, fail: Callable[[str], NoReturn]
    ) -> None:
        self.producer = producer
        self.depth = depth
        self.timeout_s = timeout_s
        self._fail = fail
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def send(self, messages: Sequence[Outgoing], done: Callable[[], None]) -> None:
        """Queue `messages`; `done()` runs once all of them are delivered (soon, for none)."""
        producer = self.producer
        try:
            for out in messages:
                producer.produce(out.topic, out.value, out.key, list(out.headers) or None)
        except KafkaClientError as exc:
            self._fail(f"cannot queue a batch's output ({exc.code})")
        self._waiting.append(asyncio.ensure_future(self._delivered(bool(messages), done)))
        while len(self._waiting) > self.depth - 1 or (self._waiting and self._waiting[0].done()):
            await self._waiting.popleft()

    async def drain(self) -> None:
        """Wait until every batch sent so far ran its `done()`."""
        while self._waiting:
            await self._waiting.popleft()

    async def _delivered(self, flush: bool, done: Callable[[], None]) -> None:
        if flush:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, self.timeout_s)
            except KafkaClientError as exc:
                self._fail(f"delivery did not complete ({exc.code})")
        if self.producer.stats.failed:
            self._fail("delivery failed: " + ", ".join(sorted(self.producer.stats.errors)))
        done()

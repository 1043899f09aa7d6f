"""Batches' output in flight on one librdkafka producer, acknowledged only once delivered.

`send(messages, done)` queues every message of a batch (produce() only queues: no
future and no task per message); `done()` runs on the event loop once every one of its
messages has its delivery report. Up to `depth` batches wait for their reports at a
time, so the stage builds the next batch meanwhile instead of idling. `send` returns
once fewer than `depth` batches wait.

Each batch counts its own reports (`_InFlight`), served by one poller thread. A flush
would not do: librdkafka's flush waits until the whole queue is empty, and the queue
refills with the next batch while it waits, so the flush of a batch also waited for the
batch after it, and the main thread idled for that one's round trip (11% of its time on
`records bench --only streams`, issue 15).

A failed delivery, or a batch not delivered within `timeout_s`, calls `fail(reason)`,
which must not return (the streams worker exits): faust would otherwise commit offsets
whose output never reached Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import NoReturn

from confluent_kafka import KafkaError, Message

from pipeline.exceptions import KafkaClientError
from pipeline.kafka.producer import KafkaProducer
from streams.outgoing import Outgoing

# How long the poller waits for a report in one poll() call; it also ends within this
# long after `close()`.
_POLL_S = 0.1


class _InFlight:
    """One batch's messages that wait for their delivery reports. `report` runs in
    whichever thread serves them; the last one resolves `future` on its loop."""

    def __init__(self, expected: int, loop: asyncio.AbstractEventLoop) -> None:
        self.left = expected
        self.errors: Counter[str] = Counter()  # "topic: ERROR_NAME" -> count, never a message
        self.future: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._lock = threading.Lock()
        if not expected:
            self.future.set_result(None)

    def report(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.errors[f"{msg.topic()}: {err.name()}"] += 1
            self.left -= 1
            last = self.left == 0
        if last:
            # RuntimeError: its loop is closed (the process is ending), nobody awaits it
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DeliveryWindow:
    def __init__(
        self, producer: KafkaProducer, *, depth: int, timeout_s: float, fail: Callable[[str], NoReturn]
    ) -> None:
        self.producer = producer
        self.depth = depth
        self.timeout_s = timeout_s
        self._fail = fail
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()

    async def send(self, messages: Sequence[Outgoing], done: Callable[[], None]) -> None:
        """Queue `messages`; `done()` runs once all of them are delivered (soon, for none)."""
        producer = self.producer
        batch = _InFlight(len(messages), asyncio.get_running_loop())
        report = batch.report
        try:
            for out in messages:
                producer.produce(out.topic, out.value, out.key, list(out.headers) or None, on_delivery=report)
        except KafkaClientError as exc:
            self._fail(f"cannot queue a batch's output ({exc.code})")
        if messages:
            self._start_poller()
        self._waiting.append(asyncio.ensure_future(self._delivered(batch, done)))
        while len(self._waiting) > self.depth - 1 or (self._waiting and self._waiting[0].done()):
            await self._waiting.popleft()

    async def drain(self) -> None:
        """Wait until every batch sent so far ran its `done()`."""
        while self._waiting:
            await self._waiting.popleft()

    def close(self) -> None:
        """Stop the poller thread (after `drain`; a batch still in flight is never done)."""
        self._closed.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    async def _delivered(self, batch: _InFlight, done: Callable[[], None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(batch.future), self.timeout_s)
        except TimeoutError:
            self._fail(f"delivery did not complete within {self.timeout_s:.0f} s ({batch.left} message(s) left)")
        if batch.errors:
            self._fail("delivery failed: " + ", ".join(sorted(batch.errors)))
        done()

    def _start_poller(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="delivery-reports", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        poll = self.producer.producer.poll  # the client the messages were queued on
        while not self._closed.is_set():
            poll(_POLL_S)

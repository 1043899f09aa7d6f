"""A confluent-kafka consumer for "commit only after processing".

Offsets are only *stored* by the caller after its work succeeded
(`enable.auto.offset.store=False`, `store()`); `commit()` commits the stored ones
synchronously. The background auto-commit and the commit on close or revocation also
send only stored offsets, so a message is never committed before it was processed.

`commit` and `close` take a deadline (pipeline/kafka/bounded_call.py): past it the
consumer is given up (`WEDGED`), since librdkafka would otherwise block the caller for
good when its group coordinator is stuck. A consumer given up on is never destroyed
(destroying it would block as well); it is kept referenced and counted in
`abandoned_consumers`, and a replacement with the same static `group.instance.id`
fences it out of the group.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError
from pipeline.kafka.bounded_call import WEDGED, bounded
from pipeline.kafka.closed_on_exit import ClosedOnExit

log = logging.getLogger(__name__)

# Consumers given up on (a commit or close that did not return in time). Destroying one
# would block whichever thread does it, the interpreter's own at exit included, so each
# is kept alive for the life of the process: listed here, and with one reference more
# than any owner holds, so that not even the teardown of this module frees it.
_abandoned: list[Consumer] = []


def _abandon(consumer: Consumer) -> None:
    _abandoned.append(consumer)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(consumer))


def abandoned_consumers() -> int:
    """How many consumers this process has given up closing."""
    return len(_abandoned)


def _error(message: str, exc: KafkaException) -> KafkaClientError:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if error is None:
        return KafkaClientError(f"{message}: {exc}")
    return KafkaClientError(f"{message}: {error.str()}", error.name())


# Codes after which a consumer never works again. A static member fenced by another with its
# group.instance.id (e.g. its own rejoin after the broker restarted) comes as a message
# error with code _FATAL whose `fatal()` is not always set; it must not be skipped as
# transient, or the consumer polls on without partitions for ever.
FATAL_CODES = frozenset({"_FATAL", "FENCED_INSTANCE_ID", WEDGED})


def is_fatal(error: KafkaError) -> bool:
    """Whether the consumer that reported `error` can never work again."""
    return bool(error.fatal()) or error.name() in FATAL_CODES


class KafkaConsumer(ClosedOnExit):
    def __init__(
        self,
        connection: KafkaConnection,
        group_id: str,
        *,
        auto_offset_reset: str = "earliest",
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._config: dict[str, Any] = {
            **connection.as_librdkafka_dict(),
            "group.id": group_id,
            "auto.offset.reset": auto_offset_reset,
            "enable.auto.commit": "true",
            "enable.auto.offset.store": "false",
            "auto.commit.interval.ms": "1000",
            "partition.assignment.strategy": "cooperative-sticky",
            **(extra or {}),
        }
        self._consumer: Consumer | None = None
        self._wedged = False  # a call on the client never returned: never close it

    @property
    def consumer(self) -> Consumer:
        """The confluent-kafka client (created on first use), for what this wrapper lacks."""
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def subscribe(self, topics: Sequence[str], **callbacks: Any) -> None:
        """Join the group for `topics`; `callbacks` are on_assign / on_revoke / on_lost."""
        self.consumer.subscribe(list(topics), **callbacks)

    def poll(self, timeout: float) -> Message | None:
        """One message, or None if none arrived within `timeout` seconds."""
        messages = self.consume(1, timeout)
        return messages[0] if messages else None

    def consume(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to `max_messages` messages. Fatal errors raise; others (a partition EOF, a
        broker briefly away) are logged and skipped: librdkafka retries them itself."""
        try:
            messages = self.consumer.consume(max_messages, timeout)
        except KafkaException as exc:
            raise _error("consume failed", exc) from exc
        out: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                out.append(message)
            elif is_fatal(error):
                raise KafkaClientError(f"consumer failed: {error.str()}", error.name())
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s [%s]", error.str(), error.name())
        return out

    def store(self, messages: Sequence[Message]) -> None:
        """Mark messages as processed: their offsets (+1) will be committed."""
        latest: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            latest[(topic, partition)] = max(latest.get((topic, partition), -1), offset)
        if latest:
            try:
                self.consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in latest.items()])
            except KafkaException as exc:
                raise _error("storing offsets failed", exc) from exc

    def commit(self, timeout: float | None = None) -> None:
        """Commit the stored offsets now (synchronously); nothing stored is not an error.
        With `timeout`, a commit with no result by then raises KafkaClientError with code
        `WEDGED`: the consumer is to be replaced (whether the commit landed is unknown).
        Not with `timeout` inside a rebalance callback (pipeline/kafka/bounded_call.py)."""
        consumer = self.consumer
        try:
            if timeout is None:
                consumer.commit(asynchronous=False)
            else:
                bounded(lambda: consumer.commit(asynchronous=False), timeout, "offset commit")
        except KafkaClientError as exc:
            self._wedged = self._wedged or exc.code == WEDGED
            raise
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            raise _error("commit failed", exc) from exc

    def close(self, timeout: float | None = None) -> None:
        """Commit what is stored and leave the group. With `timeout`, a close not done by
        then abandons the client (see the module docstring) and raises KafkaClientError
        with code `WEDGED`; either way this wrapper no longer holds it. A client with a
        commit that never returned is abandoned at once (closing it under that commit is
        not safe)."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if self._wedged:
            self._wedged = False
            _abandon(consumer)
            raise KafkaClientError("consumer abandoned: a commit on it never returned", WEDGED)
        if timeout is None:
            consumer.close()
            return
        try:
            bounded(consumer.close, timeout, "consumer close")
        except KafkaClientError as exc:
            if exc.code == WEDGED:
                _abandon(consumer)
            raise

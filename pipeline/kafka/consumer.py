"""A confluent-kafka consumer for "commit only after processing".

Auto-commit runs, but offsets are only *stored* by the caller after its work succeeded
(`enable.auto.offset.store=False`), and `commit()` commits the stored ones synchronously.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaAdminError


class KafkaConsumer:
    def __init__(
        self,
        connection: KafkaConnection,
        group_id: str,
        *,
        auto_offset_reset: str = "earliest",
        extra: dict[str, str] | None = None,
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

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def subscribe(self, topics: Sequence[str], **callbacks: Any) -> None:
        self.consumer.subscribe(list(topics), **callbacks)

    def consume(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to `max_messages` messages; partition EOFs and transient errors are skipped,
        fatal ones raise."""
        messages = self.consumer.consume(max_messages, timeout)
        out: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                out.append(message)
            elif error.fatal():
                raise KafkaAdminError(f"consumer failed: {error.str()}", error.name())
        return out

    def store(self, messages: Sequence[Message]) -> None:
        """Mark messages as processed (their offsets will be committed)."""
        latest: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            latest[(topic, partition)] = max(latest.get((topic, partition), -1), offset)
        if latest:
            self.consumer.store_offsets(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in latest.items()]
            )

    def commit(self) -> None:
        """Commit stored offsets now (synchronously)."""
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != -168:  # _NO_OFFSET: nothing stored since the last commit
                raise KafkaAdminError(f"commit failed: {error.str()}", error.name()) from exc

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

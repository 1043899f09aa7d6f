"""An idempotent confluent-kafka producer that counts delivery reports.

Created on first use, flushed on close. A failed delivery is recorded with its topic and
Kafka error code (never the message), so callers can report and exit non-zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError
from pipeline.kafka.closed_on_exit import ClosedOnExit

# A message's key and headers as the producer takes them (confluent-kafka's types).
MessageKey = bytes | str | None
Headers = list[tuple[str, bytes]]

# Throughput settings: the connection's KAFKA_CONFIG_* or `extra` may change them.
_TUNING = {
    "linger.ms": "20",
    "batch.size": "1000000",
    "compression.type": "lz4",
    "queue.buffering.max.messages": "500000",
}
# Delivery guarantees: no duplicates on retry, acknowledged by every in-sync replica.
_GUARANTEES = {"enable.idempotence": "true", "acks": "all"}


@dataclass
class DeliveryStats:
    delivered: int = 0  # stays 0 with delivery.report.only.error (reports of failures only)
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "topic: ERROR_NAME" -> count

    def describe_errors(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in self.errors.most_common())


class KafkaProducer(ClosedOnExit):
    def __init__(self, connection: KafkaConnection, extra: dict[str, Any] | None = None) -> None:
        self._config: dict[str, Any] = {
            **_TUNING,
            **connection.as_librdkafka_dict(),
            **(extra or {}),
            **_GUARANTEES,
        }
        self._producer: Producer | None = None
        self.stats = DeliveryStats()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            self.stats.errors[f"{msg.topic()}: {err.name()}"] += 1

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: MessageKey = None,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Queue one message (confluent-kafka's argument order; value None: a tombstone).
        Waits, serving delivery reports, while the local queue is full. `on_delivery` takes
        the message's report instead of `stats` (from whichever thread serves reports)."""
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery or self._on_delivery}
        if headers:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                raise KafkaClientError(f"cannot produce to {topic}: {error.str()}", error.name()) from exc

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports."""
        self.producer.poll(timeout)

    def flush(self, timeout: float = 60.0) -> DeliveryStats:
        """Wait for every queued message; anything still queued after `timeout` is an error."""
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            if remaining:
                raise KafkaClientError(f"{remaining} message(s) not delivered within {timeout:.0f} s", "_TIMED_OUT")
        return self.stats

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer = None

"""Which consumer errors end a consumer for good (pipeline/kafka/consumer.py `is_fatal`).

After a broker restart a static member can be fenced by its own rejoin; librdkafka then
reports `_FATAL` on a message whose `fatal()` is false (seen in
tests/faults/test_broker_restart.py: the sink logged it as transient and polled a dead
consumer until the test gave up)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from pipeline.kafka.consumer import is_fatal


def test_a_fatal_code_is_fatal_even_without_the_fatal_flag() -> None:
    assert is_fatal(KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced", fatal=False))
    assert is_fatal(KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced", fatal=False))
    assert is_fatal(KafkaError(KafkaError._TRANSPORT, "gone", fatal=True))


def test_transient_errors_are_not_fatal() -> None:
    assert not is_fatal(KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert not is_fatal(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down"))
    assert not is_fatal(KafkaError(KafkaError._PARTITION_EOF, "eof"))

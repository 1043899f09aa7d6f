"""Where the seconds of one timed erasure go, read from the Kafka timestamps its messages
carry (the producers' clocks: all on this machine): the request on cs.dsr.v1 (the CLI
produced it), the command on cs.dsr.commands.v1 (the streams stage finished its part)
and the receipt on cs.dsr.receipts.v1 (the sink finished its part).

Steps, in seconds: `cli` from the start of `records dsr erase` to the request, `streams`
from the request to the command, `sink` from the command to the receipt, `receipt_read`
from the receipt until the benchmark had read it.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.config import Settings
from pipeline.topics import DSR, DSR_COMMANDS, DSR_RECEIPTS

STEPS = ("cli", "streams", "sink", "receipt_read")


def message_times(settings: Settings, request_id: str, timeout: float = 30.0) -> dict[str, float]:
    """Topic -> the (latest) timestamp, epoch seconds, of a message keyed `request_id`."""
    names = [DSR.name, DSR_COMMANDS.name, DSR_RECEIPTS.name]
    consumer = Consumer(
        {
            **settings.kafka.as_librdkafka_dict(),
            "group.id": "records-bench-erasure-steps",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=timeout)
        parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in names for p in metadata.topics[t].partitions]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        found: dict[str, float] = {}
        key = request_id.encode()
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((message.topic() or "", message.partition() or 0))
                    continue
                if message.key() == key:
                    topic = message.topic() or ""
                    found[topic] = max(found.get(topic, 0.0), message.timestamp()[1] / 1000)
        return found
    finally:
        consumer.close()


def erasure_steps(settings: Settings, request_id: str, started: float, ended: float) -> dict[str, float]:
    """The steps of one erasure (see the module docstring); `started`/`ended` epoch seconds.
    A step whose message was not found is left out."""
    at = message_times(settings, request_id)
    marks = [("start", started), *((t, at[t]) for t in (DSR.name, DSR_COMMANDS.name, DSR_RECEIPTS.name) if t in at)]
    if len(marks) < 4:
        return {}
    marks.append(("end", ended))
    return {step: round(marks[i + 1][1] - marks[i][1], 3) for i, step in enumerate(STEPS)}

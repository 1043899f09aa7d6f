"""The yardstick: a plain single-process loop over the raw topics, no stream framework.

confluent-kafka consume -> fastavro decode -> (optionally the project's enrichment and
enforcement, `streams.rows.RowBuilder`, with the consent state in a dict: bench/transform.py)
-> fastavro encode -> confluent-kafka produce (lz4, idempotent, acks=all, as pipeline/kafka/producer.py
configures it). `bare` re-encodes the decoded record unchanged. Timed from the first
message consumed until the last delivery report.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer

from bench.transform import RawTransform
from pipeline import topics
from pipeline.config import Settings
from pipeline.subject_keys import SubjectKeyer

RAW = [topics.CHAT.name, topics.CALL.name, topics.CONSENT.name, topics.CONTACT_FORM.name]


def run_plain_loop(settings: Settings, keyer: SubjectKeyer, out_topic: str, total: int, *, enrich: bool) -> float:
    """Consume `total` messages from the raw topics (a new group, from the start) and
    write what they become to `out_topic`; returns events/s."""
    kafka = settings.kafka.as_librdkafka_dict()
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"bench-plain-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "log_level": 3,
        }
    )
    producer = Producer(
        {
            **kafka,
            "linger.ms": "20",
            "batch.size": "1000000",
            "compression.type": "lz4",
            "enable.idempotence": "true",
            "acks": "all",
            "queue.buffering.max.messages": "500000",
        }
    )
    transform = RawTransform(keyer, enrich=enrich)
    consumer.subscribe(RAW)
    done = 0
    started = 0.0
    try:
        while done < total:
            messages = consumer.consume(1000, 1.0)
            if not messages:
                continue
            if not started:
                started = time.perf_counter()
            now = datetime.now(UTC)
            for message in messages:
                if message.error() is not None:
                    continue
                done += 1
                for key, value, headers in transform(message.key(), message.value(), now):
                    producer.produce(out_topic, value, key, headers=headers)
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()
    return done / (time.perf_counter() - started)

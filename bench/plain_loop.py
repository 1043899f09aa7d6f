"""The yardstick: a plain single-process loop over the raw topics, no stream framework.

confluent-kafka consume -> fastavro decode -> (optionally the project's enrichment and
enforcement, `streams.rows.RowBuilder`, with the consent state in a dict) -> fastavro
encode -> confluent-kafka produce (lz4, idempotent, acks=all, as pipeline/kafka/producer.py
configures it). `bare` re-encodes the decoded record unchanged. Timed from the first
message consumed until the last delivery report.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer

from pipeline import topics
from pipeline.config import Settings
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.subject_keys import SubjectKeyer
from streams.consent_state import EMPTY, SubjectConsent, apply, merge
from streams.rows import RowBuilder

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
    decode = AvroDeserializer()
    serializers: dict[str, AvroSerializer] = {}
    builder = RowBuilder(keyer, default_policy())
    consent: dict[str, SubjectConsent] = {}
    erased: dict[str, int] = {}  # the erasure ledger (empty here, looked up as streams does)

    def consent_of(keys: Sequence[str]) -> SubjectConsent:
        return merge(consent.get(k, EMPTY) for k in keys)

    def encode(schema: str, value: dict[str, object]) -> bytes:
        serializer = serializers.get(schema)
        if serializer is None:
            serializer = serializers[schema] = AvroSerializer(schema)
        return serializer(value)

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
                try:
                    decoded = decode(message.value())
                except SerdeError:
                    producer.produce(out_topic, message.value(), message.key())
                    continue
                if not enrich:
                    producer.produce(out_topic, encode(decoded.schema_name, decoded.value), message.key())
                    continue
                try:
                    keys, moment = builder.erasure_scope(decoded.schema_name, decoded.value)
                    if any(erased.get(k, -1) >= moment for k in keys):
                        continue
                    outcome = builder.build(decoded.schema_name, decoded.value, consent_of, now)
                except Exception:
                    producer.produce(out_topic, message.value(), message.key())
                    continue
                for key, change in outcome.consent_changes:
                    consent[key] = apply(consent.get(key, EMPTY), change)
                for row in outcome.rows:
                    value = None if row.value is None or row.schema is None else encode(row.schema, row.value)
                    producer.produce(out_topic, value, row.key.encode(), headers=list(row.headers))
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()
    return done / (time.perf_counter() - started)

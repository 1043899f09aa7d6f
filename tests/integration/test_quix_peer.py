"""The Quix Streams peer of `records bench` (bench/quix_peer.py) against the real local
broker: in its own virtualenv (made on first use, then kept) it runs the same transform
as the plain loop (bench/transform.py) and writes the same messages for the same input.
No timing is asserted."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from bench.quix_peer import ensure_quix_venv, run_quix_peer
from bench.transform import RawTransform
from pipeline.event_producer import EventEncoder
from pipeline.topics import TopicSpec
from records.simulate import SimulationConfig, generate
from tests.support.worker_secrets import KEYER, PEPPER_HEX

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(1200)]  # the first run installs quixstreams

EVENTS = 300


def _read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        for _ in range(120):
            out += [(m.key(), m.value()) for m in consumer.consume(500, 0.5) if m.error() is None]
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def test_the_quix_peer_writes_what_the_plain_loop_transform_writes(
    kafka_bootstrap: str, topic_factory: Callable[..., TopicSpec], tmp_path: Path
) -> None:
    raw = {kind: topic_factory(partitions=2, prefix=f"quix-{kind}").name for kind in ("chat", "call", "consent")}
    out = topic_factory(partitions=1, prefix="quix-out").name
    encoder = EventEncoder(keyer=KEYER)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    expected: Counter[tuple[bytes | None, bool]] = Counter()  # (key, tombstone)
    transform = RawTransform(KEYER, enrich=True)
    now = datetime.now(UTC)
    sent = 0
    for event in generate(SimulationConfig(events=EVENTS, seed=11)):
        if event.record is None or event.schema_name is None:
            continue
        encoded = encoder.encode(event.schema_name, event.record)
        kind = next((k for k in raw if k in encoded.topic), None)
        if kind is None:  # contact forms: the peer reads them in the bench; this test keeps to three topics
            continue
        key = encoded.key.encode()
        producer.produce(raw[kind], encoded.value, key)
        sent += 1
        expected.update((k, v is None) for k, v, _ in transform(key, encoded.value, now))
    assert producer.flush(30) == 0

    python = ensure_quix_venv()
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "RECORDS_PEPPER": PEPPER_HEX}
    rate = run_quix_peer(python, env, out, sent, tmp_path / "state", timeout=600, sources=list(raw.values()))

    written = _read_all(kafka_bootstrap, out, sum(expected.values()))
    assert rate > 0
    # The same messages by key and kind. How many a key gets can differ: the peer reads the
    # raw topics interleaved, and a subject's consent state at a chat depends on that order.
    assert set((k, v is None) for k, v in written) == set(expected)

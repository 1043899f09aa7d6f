"""`records produce` and `records simulate` as a user runs them, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.serde import AvroDeserializer
from pipeline.topics import ALL_TOPICS, CALL, CHAT, CONSENT

REPO = Path(__file__).resolve().parents[2]


def _records(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", *args],
        cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=180, check=False,
    )


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP": settings.kafka.bootstrap, "RECORDS_DATA_DIR": str(tmp_path)}


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka.as_librdkafka_dict(), "group.id": "probe", "log_level": 3})
    try:
        for _ in range(50):  # a topic created a moment ago may not have its leaders yet
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            except KafkaException:
                time.sleep(0.2)
        raise AssertionError(f"no watermarks for {topic}")
    finally:
        consumer.close()


def _read_from(settings: Settings, topic: str, start: dict[int, int]) -> list[bytes]:
    end = _ends(settings, topic)
    consumer = Consumer({**settings.kafka.as_librdkafka_dict(), "group.id": "probe", "log_level": 3,
                         "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    out: list[bytes] = []
    want = sum(end[p] - start[p] for p in start)
    while len(out) < want:
        for message in consumer.consume(500, 1.0):
            if message.error() is None and message.value() is not None:
                out.append(message.value())
    consumer.close()
    return out


def _call(call_id: str, **overrides: object) -> dict[str, object]:
    return {
        "event_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
        "event_time": "2026-11-01T10:00:00Z",
        "produced_at": "2026-11-01T10:00:01Z",
        "source_system": "pbx",
        "call_id": call_id,
        "caller_number": "+358401234567",
        "service_number": "+358201234560",
        "started_at": "2026-11-01T09:55:00Z",
        "ended_at": "2026-11-01T10:00:00Z",
        **overrides,
    }


def test_produce_rejects_a_file_with_bad_lines_and_sends_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    ensure_topics(KafkaAdmin(kafka_settings.kafka), ALL_TOPICS)
    before = _ends(kafka_settings, CALL.name)
    lines = [
        json.dumps({"_schema": "CallDetailRecord", **_call("c-ok-1")}),
        json.dumps({"_schema": "CallDetailRecord", **_call("c-bad", caller_number=401234567)}),
        "{not json",
        json.dumps({"_schema": "CallDetailRecord", **_call("c-ok-2", ended_at="soon")}),
    ]
    result = _records(_env(kafka_settings, tmp_path), "produce", "--topic", CALL.name, stdin="\n".join(lines))
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert errors[0] == "line 2: cs.records.CallDetailRecord: field 'caller_number': expected string, got int"
    assert errors[1].startswith("line 3: not JSON")
    assert errors[2].startswith("line 4: cs.records.CallDetailRecord: field 'ended_at'")
    assert "401234567" not in result.stderr
    assert _ends(kafka_settings, CALL.name) == before, "nothing was sent"

    skipped = _records(
        _env(kafka_settings, tmp_path), "produce", "--topic", CALL.name, "--skip-invalid", stdin="\n".join(lines)
    )
    assert skipped.returncode == 1
    assert "produced 1, rejected 3, failed 0" in skipped.stdout
    sent = [AvroDeserializer()(v).value for v in _read_from(kafka_settings, CALL.name, before)]
    assert [r["call_id"] for r in sent] == ["c-ok-1"]


def test_simulate_delivers_every_event(kafka_settings: Settings, tmp_path: Path) -> None:
    ensure_topics(KafkaAdmin(kafka_settings.kafka), ALL_TOPICS)
    starts = {t: _ends(kafka_settings, t) for t in (CHAT.name, CALL.name, CONSENT.name)}
    result = _records(_env(kafka_settings, tmp_path), "simulate", "--events", "600", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert "delivered 600 of 600 events" in result.stdout
    decode = AvroDeserializer()
    decoded, malformed = 0, 0
    for topic, start in starts.items():
        for value in _read_from(kafka_settings, topic, start):
            try:
                decode(value)
                decoded += 1
            except Exception:
                malformed += 1
    reported = int(next(line for line in result.stdout.splitlines() if "malformed" in line).split()[-1])
    assert decoded + malformed == 600
    assert malformed == reported > 0

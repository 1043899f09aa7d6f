"""`records produce` as a user runs it, against the real broker.

The command writes the product's own topics, which other tests share: each test creates
them if missing, remembers their end offsets first, and looks only at what came after
and carries the ids it made up itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.config import Settings, load_settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.serde import AvroDeserializer, SerdeError
from pipeline.subject_keys import IdentifierKind, SubjectKeyer, load_pepper
from pipeline.topics import CALL, CONSENT, TopicSpec

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


class Received(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def records_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from records.cli import main; main()", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cli_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDS_PEPPER", "SCHEMA_REGISTRY"))}
    return {**env, "KAFKA_BOOTSTRAP": settings.kafka.bootstrap, "RECORDS_DATA_DIR": str(data_dir)}


def ensure_input_topics(settings: Settings, specs: list[TopicSpec]) -> None:
    KafkaAdmin(settings.kafka).create_topics(specs)  # an existing topic is left alone


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka.as_librdkafka_dict(), "group.id": "offsets-probe", "log_level": 3})
    try:
        for _ in range(50):  # a topic created a moment ago may not have its leaders yet
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            except KafkaException:
                time.sleep(0.2)
        raise AssertionError(f"no end offsets for {topic}")
    finally:
        consumer.close()


def _headers(message: Message) -> dict[str, bytes]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def read_since(settings: Settings, topic: str, start: dict[int, int]) -> list[Received]:
    """Every message of `topic` after `start` up to the current end offsets."""
    end = end_offsets(settings, topic)
    want = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    if not want:
        return []
    config = {**settings.kafka.as_librdkafka_dict(), "group.id": "reader", "enable.auto.commit": "false"}
    consumer = Consumer({**config, "log_level": 3})
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in want])
    out: list[Received] = []
    done: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                out.append(Received(message.key(), message.value(), _headers(message)))
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None and offset >= want[partition] - 1:
                    done.add(partition)
    finally:
        consumer.close()
    assert len(done) == len(want), f"did not read {topic} to its end within 60 s"
    return out


def decoded_since(settings: Settings, topic: str, start: dict[int, int]) -> list[tuple[bytes | None, dict[str, Any]]]:
    """The Avro records among the messages since `start` (other tests' malformed ones skipped)."""
    decode = AvroDeserializer()
    out = []
    for key, value, _ in read_since(settings, topic, start):
        try:
            out.append((key, decode(value).value))
        except SerdeError:
            continue
    return out


def _call(call_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "_schema": "CallDetailRecord",
        "event_id": str(uuid.uuid4()),
        "event_time": "2026-11-01T10:00:00Z",
        "produced_at": "2026-11-01T10:00:01Z",
        "source_system": "pbx",
        "call_id": call_id,
        "direction": "INBOUND",
        "caller_number": "+358401234567",
        "service_number": "+358206341100",
        "started_at": "2026-11-01T09:55:00Z",
        "ended_at": "2026-11-01T10:00:00Z",
        **overrides,
    }


def _recording(call_id: str) -> dict[str, Any]:
    return {
        "_schema": "CallRecording",
        "event_id": str(uuid.uuid4()),
        "event_time": "2026-11-01T10:00:00Z",
        "produced_at": 1793527205000,
        "source_system": "call-recorder",
        "recording_id": f"rec-{call_id}",
        "call_id": call_id,
        "caller_number": "+358401234567",
        "recording_uri": "s3://cs-call-recordings/x.opus",
        "notice_played_at": "2026-11-01T09:55:03Z",
        "recording_started_at": "2026-11-01T09:55:20Z",
        "recording_ended_at": "2026-11-01T10:00:00Z",
    }


def _call_ids(settings: Settings, start: dict[int, int], tag: str) -> list[tuple[str, str]]:
    """(Kafka key, call_id) of this test's messages on cs.call.v1 since `start`."""
    return [
        ((key or b"").decode(), record["call_id"])
        for key, record in decoded_since(settings, CALL.name, start)
        if record["call_id"].startswith(tag)
    ]


def test_a_file_with_bad_lines_is_rejected_whole_and_every_problem_named(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    ensure_input_topics(kafka_settings, [CALL])
    tag = f"t{uuid.uuid4().hex[:8]}-"
    lines = [
        json.dumps(_call(f"{tag}ok-1")),
        json.dumps(_call(f"{tag}bad", caller_number=401234567, ended_at="soon")),
        "",
        "{not json",
        json.dumps(_recording(f"{tag}ok-2")),
        json.dumps({k: v for k, v in _call(f"{tag}no-schema").items() if k != "_schema"}),
    ]
    source = tmp_path / "calls.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = end_offsets(kafka_settings, CALL.name)

    result = records_cli(cli_env(kafka_settings, tmp_path), "produce", "--topic", CALL.name, "--file", str(source))

    assert result.returncode == 1
    assert result.stderr.splitlines()[:4] == [
        "line 2: CallDetailRecord: field 'caller_number': expected string, got int",
        "line 2: CallDetailRecord: field 'ended_at': expected an ISO-8601 timestamp or epoch milliseconds",
        "line 4: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 6: field '_schema': is required on cs.call.v1 (one of CallDetailRecord, CallRecording)",
    ]
    assert "401234567" not in result.stderr
    assert "nothing sent" in result.stderr
    assert result.stdout.strip() == "produced 0, rejected 3, failed 0"
    assert _call_ids(kafka_settings, before, tag) == [], "nothing of the file was sent"

    skipped = records_cli(
        cli_env(kafka_settings, tmp_path), "produce", "--topic", CALL.name, "--skip-invalid", stdin="\n".join(lines)
    )
    assert skipped.returncode == 1, "invalid lines still fail the run"
    assert skipped.stdout.strip() == "produced 2, rejected 3, failed 0"
    assert sorted(_call_ids(kafka_settings, before, tag)) == [(f"{tag}ok-1",) * 2, (f"{tag}ok-2",) * 2]


def test_a_valid_file_is_sent_with_the_keys_of_the_architecture(kafka_settings: Settings, tmp_path: Path) -> None:
    ensure_input_topics(kafka_settings, [CALL, CONSENT])
    tag = f"t{uuid.uuid4().hex[:8]}-"
    email = f"{tag}maija@example.fi"
    consent = {
        "_schema": "ConsentChanged",
        "event_id": str(uuid.uuid4()),
        "event_time": "2026-11-01T10:00:00Z",
        "produced_at": "2026-11-01T10:00:01Z",
        "source_system": "web-chat",
        "subject": {"email": email.upper(), "phone": "040 123 4567"},
        "purpose": "CONTACT_DETAILS",
        "status": "WITHDRAWN",
        "channel": "WEB_CHAT",
    }
    env = cli_env(kafka_settings, tmp_path)
    calls_before = end_offsets(kafka_settings, CALL.name)
    consent_before = end_offsets(kafka_settings, CONSENT.name)

    calls = records_cli(env, "produce", "--topic", CALL.name, stdin=json.dumps(_call(f"{tag}1")) + "\n")
    consents = records_cli(env, "produce", "--topic", CONSENT.name, stdin=json.dumps(consent))

    assert (calls.returncode, calls.stdout.strip()) == (0, "produced 1, rejected 0, failed 0"), calls.stderr
    assert (consents.returncode, consents.stdout.strip()) == (0, "produced 1, rejected 0, failed 0"), consents.stderr
    assert _call_ids(kafka_settings, calls_before, tag) == [(f"{tag}1", f"{tag}1")]
    # The consent change is keyed by the subject key of its email under the demo pepper.
    keyer = SubjectKeyer(load_pepper(load_settings({"RECORDS_DATA_DIR": str(tmp_path)}), allow_demo=True))
    ours = [
        (key, record)
        for key, record in decoded_since(kafka_settings, CONSENT.name, consent_before)
        if record.get("subject", {}).get("email") == email.upper()
    ]
    assert len(ours) == 1
    key, record = ours[0]
    assert key == (keyer.key(IdentifierKind.EMAIL, email) or "").encode()
    assert record["status"] == "WITHDRAWN" and record["subject"]["phone"] == "040 123 4567"


def test_only_input_topics_are_accepted(kafka_settings: Settings, tmp_path: Path) -> None:
    result = records_cli(cli_env(kafka_settings, tmp_path), "produce", "--topic", "cs.subjects.v1", stdin="{}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: records produce writes the pipeline's input topics (cs.chat.v1")

"""`records produce` as a user runs it, against the real broker.

The command writes the product's own topics, which other tests share: each test creates
them if missing, remembers their end offsets first, and looks only at what came after
and carries the ids it made up itself.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings, load_settings
from pipeline.serde import AvroDeserializer, SerdeError
from pipeline.subject_keys import IdentifierKind, SubjectKeyer, load_pepper
from pipeline.topics import CALL, CONSENT
from tests.support.cli import producer_env, run_records
from tests.support.kafka_offsets import ensure_input_topics, topic_end_offsets
from tests.support.kafka_reads import read_since

pytestmark = pytest.mark.kafka


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
    before = topic_end_offsets(kafka_settings, CALL.name)

    result = run_records(
        "produce", "--topic", CALL.name, "--file", str(source), env=producer_env(kafka_settings, tmp_path), timeout=300
    )

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

    skipped = run_records(
        *("produce", "--topic", CALL.name, "--skip-invalid"),
        env=producer_env(kafka_settings, tmp_path),
        stdin="\n".join(lines),
        timeout=300,
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
    env = producer_env(kafka_settings, tmp_path)
    calls_before = topic_end_offsets(kafka_settings, CALL.name)
    consent_before = topic_end_offsets(kafka_settings, CONSENT.name)

    call = json.dumps(_call(f"{tag}1")) + "\n"
    calls = run_records("produce", "--topic", CALL.name, env=env, stdin=call, timeout=300)
    consents = run_records("produce", "--topic", CONSENT.name, env=env, stdin=json.dumps(consent), timeout=300)

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
    result = run_records(
        "produce", "--topic", "cs.subjects.v1", env=producer_env(kafka_settings, tmp_path), stdin="{}", timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: records produce writes the pipeline's input topics (cs.chat.v1")

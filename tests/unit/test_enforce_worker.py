"""The worker's routing without a broker: messages in, what it would send out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.dead_letter import parse_headers
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from streams.app import StreamsWorker, _Batch, _now
from streams.consent_state import EMPTY, ConsentChange, apply, to_millis, to_stored
from tests.support.raw_events import cdr_event, chat_event, recording_event
from tests.support.streams_worker import streams_worker

KEYER = SubjectKeyer(bytes(range(32)))


@pytest.fixture
def worker(tmp_path: Path) -> tuple[StreamsWorker, CollectorRegistry]:
    return streams_worker(tmp_path, KEYER)


def _message(topic: str, value: bytes, offset: int = 7) -> Any:
    return SimpleNamespace(
        topic=topic,
        partition=1,
        offset=offset,
        key=b"the-key",
        value=value,
        headers=[("trace", b"t1")],
        timestamp=None,  # faust's Message: the Kafka record timestamp, None when unknown
    )


def _run(worker: StreamsWorker, *events: Any) -> _Batch:
    batch = _Batch(_now())
    for event in events:
        worker._process(event, batch)
    worker._count(batch)
    return batch


def test_bad_input_goes_to_the_dlq_untouched_with_its_reason(worker: tuple[StreamsWorker, CollectorRegistry]) -> None:
    app, registry = worker
    cases = {
        b"junk": "SerdeError",
        AvroSerializer("CallDetailRecord")(cdr_event()): "InvalidEvent",  # not a chat
        AvroSerializer("ChatConversation")(chat_event(channel="UNKNOWN")): "InvalidEvent",
    }
    batch = _run(app, *(_message(topics.CHAT.name, value, offset=i) for i, value in enumerate(cases)))
    assert [out.topic for out in batch.sends] == [topics.DLQ.name] * 3
    for out, (original, error_class) in zip(batch.sends, cases.items(), strict=True):
        key, value, headers = out.key, out.value, out.headers
        assert (key, value) == (b"the-key", original)
        assert headers[0] == ("trace", b"t1")
        dlq = parse_headers(headers)
        assert (dlq["dlq.error.class"], dlq["dlq.source.topic"], dlq["dlq.stage"]) == (
            error_class,
            topics.CHAT.name,
            "streams",
        )
    assert (
        registry.get_sample_value(
            "records_streams_dead_lettered_total", {"source_topic": topics.CHAT.name, "error_class": "InvalidEvent"}
        )
        == 2
    )


def test_an_unnoticed_recording_is_quarantined_and_counted(worker: tuple[StreamsWorker, CollectorRegistry]) -> None:
    app, registry = worker
    value = AvroSerializer("CallRecording")(recording_event(notice_played_at=None))
    batch = _run(app, _message(topics.CALL.name, value))
    (out,) = batch.sends
    topic, key, sent, headers = out.topic, out.key, out.value, out.headers
    assert (topic, key, sent) == (topics.QUARANTINE.name, b"the-key", value)
    assert parse_headers(headers)["dlq.error"].startswith("recording without prior notice")
    assert (
        registry.get_sample_value("records_streams_quarantined_total", {"reason": "recording_notice_before_start"}) == 1
    )


def test_a_chat_is_enforced_against_the_consent_table(worker: tuple[StreamsWorker, CollectorRegistry]) -> None:
    app, registry = worker
    message = {"message_id": "m1", "sent_at": datetime(2026, 11, 1, 10, tzinfo=UTC), "sender": "VISITOR"}
    chat = chat_event(messages=[{**message, "agent_username": None, "text": "Hei"}])
    withdrawn = apply(
        EMPTY, ConsentChange(to_millis(chat["started_at"] + timedelta(hours=1)), {"contact_consent": False})
    )
    visitor_key = KEYER.key(IdentifierKind.VISITOR_ID, "v-1")
    assert visitor_key is not None
    app.consent_table.data[visitor_key.encode()] = to_stored(withdrawn)  # as if restored from the changelog
    batch = _run(app, _message(topics.CHAT.name, AvroSerializer("ChatConversation")(chat)))
    assert [(out.topic, out.key) for out in batch.sends] == [
        (topics.CHAT_ENRICHED.name, b"conv-1"),
        (topics.CHAT_ENRICHED.name, b"conv-1"),
    ]
    row = AvroDeserializer()(batch.sends[0].value).value
    assert row["email"] is None and "email:consent_withdrawn" in row["stripped"]
    assert (
        registry.get_sample_value(
            "records_streams_stripped_total",
            {"record_type": "chat_conversation", "field": "email", "reason": "consent_withdrawn"},
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "records_streams_events_out_total",
            {"topic": topics.CHAT_ENRICHED.name, "schema": "cs.records.ChatMessageRecord"},
        )
        == 1
    )

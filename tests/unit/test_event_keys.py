"""The Kafka key and topic of each input record, and how a line of `records produce` input
becomes a message (no Kafka involved)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import topics
from pipeline.event_producer import (
    EventEncoder,
    EventKeyError,
    InvalidLine,
    encode_json_line,
    event_key,
    needs_keyer,
    producible_topics,
)
from pipeline.serde import AvroDeserializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer

KEYER = SubjectKeyer(bytes(range(32)))
NO_SUBJECT = {"email": None, "phone": None, "person_number": None, "app_username": None, "visitor_id": None}


def _subject(**given: str) -> dict[str, Any]:
    return {**NO_SUBJECT, **given}


@pytest.mark.parametrize(
    ("schema", "record", "expected"),
    [
        ("ChatConversation", {"conversation_id": "conv-1", "call_id": "x"}, "conv-1"),
        ("cs.records.ChatConversation", {"conversation_id": "conv-1"}, "conv-1"),
        ("CallDetailRecord", {"call_id": "call-7", "caller_number": "+358401234567"}, "call-7"),
        ("CallRecording", {"call_id": "call-7", "recording_id": "rec-1"}, "call-7"),
        (
            "DataSubjectRequest",
            {"request_id": "5f0e4b7e-8a43-4c55-9a53-2d3c1b4e7a10"},
            "5f0e4b7e-8a43-4c55-9a53-2d3c1b4e7a10",
        ),
        ("DsrReceipt", {"request_id": "5f0e4b7e-8a43-4c55-9a53-2d3c1b4e7a10"}, "5f0e4b7e-8a43-4c55-9a53-2d3c1b4e7a10"),
    ],
)
def test_records_with_an_id_are_keyed_by_it(schema: str, record: dict[str, Any], expected: str) -> None:
    assert event_key(schema, record, None) == expected
    assert not needs_keyer(schema)


@pytest.mark.parametrize(
    ("given", "kind", "value"),
    [
        (
            {"email": "Maija@Example.fi", "phone": "040 123 4567", "visitor_id": "v1"},
            IdentifierKind.EMAIL,
            "maija@example.fi",
        ),
        ({"phone": "040 123 4567", "person_number": "123456"}, IdentifierKind.PHONE, "+358401234567"),
        ({"person_number": "123456", "app_username": "mmeika"}, IdentifierKind.PERSON_NUMBER, "123456"),
        ({"app_username": "MMeika", "visitor_id": "v1"}, IdentifierKind.APP_USERNAME, "mmeika"),
        ({"visitor_id": "v1"}, IdentifierKind.VISITOR_ID, "v1"),
        # an unusable identifier is skipped: the next one keys the event
        ({"email": "  ", "phone": "not a number", "visitor_id": "v1"}, IdentifierKind.VISITOR_ID, "v1"),
    ],
)
def test_a_consent_change_is_keyed_by_its_first_usable_identifier(
    given: dict[str, str], kind: IdentifierKind, value: str
) -> None:
    record = {"subject": _subject(**given)}
    assert needs_keyer("ConsentChanged")
    assert event_key("cs.records.ConsentChanged", record, KEYER) == KEYER.key(kind, value)


def test_one_subject_gives_one_key_however_the_phone_is_typed() -> None:
    keys = {
        event_key("ConsentChanged", {"subject": _subject(phone=phone)}, KEYER)
        for phone in ("040 123 4567", "+358 40 1234567", "+358401234567", "0401234567")
    }
    assert len(keys) == 1


def test_a_cookie_consent_change_is_keyed_by_the_visitor() -> None:
    assert event_key("CookieConsentChanged", {"visitor_id": "v1"}, KEYER) == KEYER.key(IdentifierKind.VISITOR_ID, "v1")


@pytest.mark.parametrize(
    ("schema", "record", "field", "without_keyer"),
    [
        ("ConsentChanged", {"subject": _subject(email="a@b.fi")}, "(record)", True),
        ("ConsentChanged", {"subject": _subject()}, "subject", False),
        ("ConsentChanged", {"subject": _subject(phone="12")}, "subject", False),
        ("CookieConsentChanged", {"visitor_id": " "}, "visitor_id", False),
        ("ChatConversation", {"conversation_id": " "}, "conversation_id", False),
        ("CallDetailRecord", {}, "call_id", False),
        ("ChatConversationRecord", {"conversation_id": "c"}, "(record)", False),
    ],
)
def test_no_key_is_an_error_that_names_the_field_not_the_value(
    schema: str, record: dict[str, Any], field: str, without_keyer: bool
) -> None:
    with pytest.raises(EventKeyError) as caught:
        event_key(schema, record, None if without_keyer else KEYER)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{schema}: field '{field}': ")
    assert "a@b.fi" not in str(caught.value)


@given(st.emails())
def test_consent_keys_never_contain_the_identifier(email: str) -> None:
    key = event_key("ConsentChanged", {"subject": _subject(email=email)}, KEYER)
    assert len(key) == 64 and email.lower() not in key


def test_the_encoder_picks_the_topic_of_the_record_type() -> None:
    encoder = EventEncoder(keyer=KEYER)
    assert encoder.topic("ChatConversation") is topics.CHAT
    assert encoder.topic("CallRecording") is topics.CALL
    assert encoder.topic("cs.records.CookieConsentChanged") is topics.CONSENT
    assert encoder.topic("DataSubjectRequest") is topics.DSR
    producible = {t.name for t in producible_topics()}
    assert {t.name for t in (topics.CHAT, topics.CALL, topics.CONSENT, topics.DSR)} <= producible
    assert not {t.name for t in (topics.CHAT_ENRICHED, topics.SUBJECTS, topics.DLQ)} & producible, "pipeline-internal"


# ---- lines of `records produce` ------------------------------------------------------------

CDR = {
    "event_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
    "event_time": "2026-11-01T10:00:00Z",
    "produced_at": 1793527201000,
    "source_system": "pbx",
    "call_id": "call-1",
    "caller_number": "+358401234567",
    "service_number": "+358206341100",
    "started_at": "2026-11-01T09:55:00Z",
    "ended_at": "2026-11-01T10:00:00Z",
}


def _line(**fields: Any) -> str:
    return json.dumps({"_schema": "CallDetailRecord", **CDR, **fields})


def test_a_valid_line_becomes_a_keyed_avro_message() -> None:
    event = encode_json_line(_line(), topics.CALL, EventEncoder())
    assert (event.topic, event.key, event.schema) == ("cs.call.v1", "call-1", "cs.records.CallDetailRecord")
    decoded = AvroDeserializer()(event.value)
    assert decoded.value["caller_number"] == "+358401234567"
    assert decoded.value["direction"] == "UNKNOWN", "a missing field takes its schema default"


def test_schema_is_optional_on_a_topic_with_one_record_type_only() -> None:
    chat_line = json.dumps({"conversation_id": "c"})
    with pytest.raises(InvalidLine) as chat_problems:
        encode_json_line(chat_line, topics.CHAT, EventEncoder())
    assert all(p.startswith("ChatConversation: field '") for p in chat_problems.value.problems)
    with pytest.raises(InvalidLine) as call_problems:
        encode_json_line(json.dumps(CDR), topics.CALL, EventEncoder())
    assert call_problems.value.problems == [
        "field '_schema': is required on cs.call.v1 (one of CallDetailRecord, CallRecording)"
    ]


@pytest.mark.parametrize(
    ("line", "problems"),
    [
        ("{not json", ["not valid JSON: Expecting property name enclosed in double quotes (column 2)"]),
        (b'{"a": "\xff"}', ["not UTF-8 text"]),
        ("[1, 2]", ["expected a JSON object with the record's fields"]),
        (
            json.dumps({"_schema": "ChatConversation", **CDR}),
            ["field '_schema': not a record type of cs.call.v1 (one of CallDetailRecord, CallRecording)"],
        ),
        (
            _line(caller_number=401234567, ended_at="soon", extra="x"),
            [
                "CallDetailRecord: field 'extra': not a field of CallDetailRecord",
                "CallDetailRecord: field 'caller_number': expected string, got int",
                "CallDetailRecord: field 'ended_at': expected an ISO-8601 timestamp or epoch milliseconds",
            ],
        ),
        (_line(call_id="  "), ["CallDetailRecord: field 'call_id': is empty; it is the Kafka key"]),
    ],
)
def test_every_problem_of_a_bad_line_is_named_without_its_value(line: str | bytes, problems: list[str]) -> None:
    with pytest.raises(InvalidLine) as caught:
        encode_json_line(line, topics.CALL, EventEncoder())
    assert caught.value.problems == problems
    assert "401234567" not in str(caught.value)


def test_a_consent_line_without_a_usable_identifier_is_rejected() -> None:
    line = json.dumps(
        {
            "event_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
            "event_time": 0,
            "produced_at": 0,
            "source_system": "web-chat",
            "subject": {"phone": "12"},
            "status": "GIVEN",
            "_schema": "ConsentChanged",
        }
    )
    with pytest.raises(InvalidLine) as caught:
        encode_json_line(line, topics.CONSENT, EventEncoder(keyer=KEYER))
    assert caught.value.problems == [
        "ConsentChanged: field 'subject': has no usable identifier "
        "(email, phone, person_number, app_username, visitor_id)"
    ]

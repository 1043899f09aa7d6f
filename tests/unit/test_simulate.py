from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.event_producer import key_for
from pipeline.exceptions import ConfigError
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.simulate import CHAT_SCHEMA, MALFORMED, RECORDING_SCHEMA, SimConfig, generate, summarise
from pipeline.subject_keys import IdentifierKind, SubjectKeyer

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CONFIG = SimConfig(events=3000, seed=11, now=NOW)


def test_same_seed_same_events() -> None:
    first = [(e.schema, e.record, e.raw) for e in generate(CONFIG)]
    again = [(e.schema, e.record, e.raw) for e in generate(CONFIG)]
    other = [(e.schema, e.record, e.raw) for e in generate(SimConfig(events=3000, seed=12, now=NOW))]
    assert first == again
    assert first != other


def test_every_record_encodes_and_malformed_ones_do_not_decode() -> None:
    serializers: dict[str, AvroSerializer] = {}
    decode = AvroDeserializer()
    malformed = 0
    for event in generate(CONFIG):
        if event.schema == MALFORMED:
            assert event.raw is not None
            with pytest.raises(SerdeError):
                decode(event.raw)
            malformed += 1
        else:
            serializer = serializers.setdefault(event.schema, AvroSerializer(event.schema))
            assert decode(serializer(event.record or {})).schema_name == event.schema
    assert malformed > 0


def test_mix_covers_what_enforcement_must_catch() -> None:
    events = list(generate(CONFIG))
    counts = summarise(events)
    assert sum(counts.values()) == 3000
    kinds = {"ChatConversation", "CallDetailRecord", "CallRecording", "ConsentChanged", "CookieConsentChanged"}
    assert kinds <= set(counts)
    chats = [e.record for e in events if e.schema == CHAT_SCHEMA and e.record]
    web = [c for c in chats if c["channel"] == "WEB"]
    assert any(c["email"] and not c["contact_consent"] for c in web), "contact details without consent"
    assert any(c["latitude"] is not None and not c["geolocation_permission"] for c in web), "location w/o permission"
    assert any(c["channel"] == "MYSTAFF_APP" and c["person_number"] for c in chats)
    recordings = [e.record for e in events if e.schema == RECORDING_SCHEMA and e.record]
    assert any(r["notice_played_at"] is None or r["notice_played_at"] > r["recording_started_at"] for r in recordings)
    times = [c["started_at"] for c in chats]
    assert min(times) >= NOW - timedelta(days=CONFIG.span_days) and max(times) <= NOW
    assert min(times) < NOW - timedelta(days=730), "events older than the longest retention exist"
    emails = [c["email"] for c in chats if c["email"]]
    assert len(emails) > len(set(emails)), "people recur across events"


def test_keys_follow_the_architecture() -> None:
    keyer = SubjectKeyer(b"k" * 32)
    chat = {"conversation_id": "chat-1"}
    assert key_for("cs.records.ChatConversation", chat, None) == b"chat-1"
    assert key_for("cs.records.CallRecording", {"call_id": "call-9"}, None) == b"call-9"
    consent = {"subject": {"email": None, "phone": "040 123 4567", "visitor_id": "v-1"}}
    phone_key = keyer.key(IdentifierKind.PHONE, "+358401234567")
    assert phone_key is not None
    assert key_for("cs.records.ConsentChanged", consent, keyer) == phone_key.encode()
    cookie = {"visitor_id": "v-1"}
    visitor_key = keyer.key(IdentifierKind.VISITOR_ID, "v-1")
    assert visitor_key is not None
    assert key_for("cs.records.CookieConsentChanged", cookie, keyer) == visitor_key.encode()
    with pytest.raises(ConfigError):
        key_for("cs.records.ConsentChanged", consent, None)

"""Enforcement properties: no field survives without its basis, whatever the input.

The expectations are computed here from the raw input and the policy file, independently
of `streams.enforce_consent` (only the enrichment parsers are shared, to know which
derived fields a raw value gives)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.policy import default_policy
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import CHAT_CONVERSATION
from streams import enrich
from streams.consent_state import EMPTY, ConsentChange, SubjectConsent, apply, merge, to_millis
from streams.enforce_consent import ConsentInForce, enforce, not_given_reason
from streams.exceptions import InvalidEvent
from streams.rows import RowBuilder
from tests.support.avro_strategies import records
from tests.support.raw_events import USER_AGENTS, chat_event

POLICY = default_policy()
CHAT_POLICY = POLICY.record("chat_conversation")
KEYER = SubjectKeyer(bytes(range(32)))
CATALOG = default_catalog()
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# Small pools so that chats and consent events share subjects.
POOLS: dict[str, list[str | None]] = {
    "visitor_id": ["v-1", "v-2", " ", None],
    "email": ["maija@example.fi", " Maija@Example.FI", "pekka@example.fi", "", None],
    "phone": ["040 123 4567", "+358 50 111 2222", "anonymous", None],
    "person_number": ["P1001", "p 1002", None],
    "app_username": ["mmeikalainen", None],
}
KINDS = {
    "visitor_id": IdentifierKind.VISITOR_ID,
    "email": IdentifierKind.EMAIL,
    "phone": IdentifierKind.PHONE,
    "person_number": IdentifierKind.PERSON_NUMBER,
    "app_username": IdentifierKind.APP_USERNAME,
}
CAPTURED_FLAG = {
    "contact_consent": lambda chat: chat["contact_consent"],
    "cookie.functional": lambda chat: chat["cookie_consent"]["functional"],
    "cookie.analytics": lambda chat: chat["cookie_consent"]["analytics"],
    "geolocation": lambda chat: chat["geolocation_permission"],
}
OFFSETS_MS = [-86_400_000, -1, 0, 1, 86_400_000]  # withdrawals around the chat's start

raw_chats = records(CATALOG.get("ChatConversation"), latest=NOW).flatmap(
    lambda chat: st.fixed_dictionaries(
        {
            **{name: st.just(value) for name, value in chat.items()},
            "conversation_id": st.just("conv-1"),
            "messages": st.just([{**m, "message_id": f"m{i}"} for i, m in enumerate(chat["messages"])]),
            "channel": st.sampled_from(["WEB", "WEB", "MYSTAFF_APP"]),
            **{name: st.sampled_from(pool) for name, pool in POOLS.items()},
            "user_agent": st.one_of(st.none(), st.sampled_from([ua for ua, _ in USER_AGENTS]), st.text(max_size=10)),
            "network_name": st.one_of(st.none(), st.sampled_from(["dsl-1.elisa.fi", "192.0.2.1", "x"])),
        }
    )
)
withdrawal_sets = st.lists(
    st.tuples(
        st.sampled_from(list(POOLS)),
        st.integers(0, 3),
        st.sampled_from(list(CAPTURED_FLAG)),
        st.sampled_from(OFFSETS_MS),
    ),
    max_size=4,
)


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _tracker(chat: dict[str, Any], withdrawals: list[tuple[str, int, str, int]]) -> dict[str, SubjectConsent]:
    started = to_millis(chat["started_at"])
    states: dict[str, SubjectConsent] = {}
    for kind_name, index, need, offset in withdrawals:
        value = POOLS[kind_name][index % len(POOLS[kind_name])]
        key = KEYER.key(KINDS[kind_name], value)
        if key is not None:
            states[key] = apply(states.get(key, EMPTY), ConsentChange(started + offset, {need: False}))
    return states


def _candidate(chat: dict[str, Any]) -> dict[str, Any]:
    """What each policy field of the chat holds before enforcement."""
    device = enrich.parse_user_agent(_blank_is_none(chat["user_agent"]))
    derived = {
        "browser": device.browser,
        "os": device.os,
        "device_type": device.device_type,
        "isp_org": enrich.isp_org(chat["network_name"]),
        "city": None,  # the default provider
    }
    return {name: derived[name] if name in derived else _blank_is_none(chat[name]) for name in CHAT_POLICY.fields}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw_chats, withdrawal_sets)
def test_no_chat_field_survives_without_its_basis(chat: dict[str, Any], withdrawals: list[Any]) -> None:
    states = _tracker(chat, withdrawals)
    outcome = RowBuilder(KEYER, POLICY).build(
        CHAT_CONVERSATION, chat, lambda keys: merge(states.get(k, EMPTY) for k in keys), NOW
    )
    conversation = outcome.rows[0].value
    assert conversation is not None

    raw_keys = {KEYER.key(kind, chat[name]) for name, kind in KINDS.items()} - {None}
    started = to_millis(chat["started_at"])
    candidate = _candidate(chat)
    expected_strips = set()
    for name, rule in CHAT_POLICY.fields.items():
        allowed = True
        if rule.needs is not None and rule.applies_to(chat["channel"]):
            if not CAPTURED_FLAG[rule.needs](chat):
                allowed, reason = False, not_given_reason(rule.needs)
            elif any(states.get(k, EMPTY).withdrawn_since(rule.needs, started) for k in raw_keys):
                allowed, reason = False, "consent_withdrawn"
        if not allowed:
            assert conversation[name] is None, name
            if candidate[name] is not None:
                expected_strips.add(f"{name}:{reason}")
        elif name == "email":
            assert conversation[name] == enrich.normalise_email(candidate[name])
        elif name == "phone":
            assert conversation[name] == enrich.e164(candidate[name])
            if candidate[name] is not None and conversation[name] is None:
                expected_strips.add("phone:invalid_phone")
        else:
            assert conversation[name] == candidate[name], name
    assert sorted(conversation["stripped"]) == sorted(expected_strips)
    assert len(conversation["stripped"]) == len(expected_strips)
    assert sorted(f"{s.field}:{s.reason}" for s in outcome.stripped) == sorted(expected_strips)

    # subject keys: exactly the keys of the identifiers that were stored
    kept = [KEYER.key(kind, conversation[name]) for name, kind in KINDS.items()]
    assert set(conversation["subject_keys"]) == set(kept) - {None}
    for strip in conversation["stripped"]:
        name = strip.split(":")[0]
        if name in KINDS:
            assert KEYER.key(KINDS[name], chat[name]) not in conversation["subject_keys"]

    # every row is exactly its table's row shape, and the transcript follows the chat
    messages = [r for r in outcome.rows if r.schema == "cs.records.ChatMessageRecord"]
    assert len(messages) == len(chat["messages"])
    for row in outcome.rows:
        assert row.value is not None and row.schema is not None
        decoded = AvroDeserializer()(AvroSerializer(row.schema)(row.value))
        assert decoded.schema_name == row.schema
    for message in messages:
        assert message.value is not None
        assert message.value["subject_keys"] == conversation["subject_keys"]
        assert message.value["expires_at"] == POLICY.record("chat_message").period.add_to(message.value["sent_at"])
    assert conversation["expires_at"] == CHAT_POLICY.period.add_to(chat["started_at"])


@given(st.data())
def test_generic_enforcement_over_every_record_type(data: st.DataObject) -> None:
    """For any policy record type, any row and any captured consents: nothing unmet
    survives, and `stripped` names exactly the non-null fields that were removed."""
    record = data.draw(st.sampled_from(list(POLICY.records.values())))
    channel = data.draw(st.sampled_from([None, "WEB", "MYSTAFF_APP"]))
    row = {name: data.draw(st.one_of(st.none(), st.text(max_size=3), st.integers())) for name in record.fields}
    needs = {rule.needs for rule in record.fields.values() if rule.needs}
    captured = {need: data.draw(st.booleans()) for need in needs}
    out, stripped = enforce(record, row, channel=channel, consent=ConsentInForce(captured))
    removed = {name for name in row if row[name] is not None and out[name] is None}
    assert {s.field for s in stripped} == removed
    for name, rule in record.fields.items():
        if rule.needs and rule.applies_to(channel) and not captured[rule.needs]:
            assert out[name] is None
        else:
            assert out[name] == row[name]


def test_every_consent_based_field_can_be_null_in_its_table() -> None:
    for record in POLICY.records.values():
        schema = CATALOG.get(record.schema)
        types = {f["name"]: f["type"] for f in schema.definition["fields"]}
        for name, rule in record.fields.items():
            if rule.needs is not None:
                assert isinstance(types[name], list) and "null" in types[name], f"{record.record_type}.{name}"


def _build(chat: dict[str, Any], tracked: SubjectConsent = EMPTY) -> dict[str, Any]:
    outcome = RowBuilder(KEYER, POLICY).build(CHAT_CONVERSATION, chat, lambda keys: tracked, NOW)
    value = outcome.rows[0].value
    assert value is not None
    return value


def test_a_withdrawal_covers_chats_started_before_it_only() -> None:
    started = to_millis(chat_event()["started_at"])
    before = apply(EMPTY, ConsentChange(started - 1, {"contact_consent": False}))
    after = apply(EMPTY, ConsentChange(started + 1, {"contact_consent": False}))
    kept = _build(chat_event(), before)  # withdrawn, then given again in this chat
    assert kept["email"] == "maija@example.fi" and kept["contact_consent"] is True
    cleared = _build(chat_event(), after)
    assert cleared["email"] is None and cleared["name"] is None and cleared["contact_consent"] is False
    assert {"name:consent_withdrawn", "email:consent_withdrawn", "phone:consent_withdrawn"} <= set(cleared["stripped"])
    assert cleared["latitude"] == 61.49  # other consents are untouched


def test_the_web_chat_keeps_the_visitor_key_and_mystaff_keeps_its_identity() -> None:
    row = _build(chat_event(contact_consent=False))
    assert row["subject_keys"] == [KEYER.key(IdentifierKind.VISITOR_ID, "v-1")]
    app = _build(chat_event(channel="MYSTAFF_APP", contact_consent=False, visitor_id=None, person_number="P1001"))
    assert app["email"] == "maija@example.fi" and app["phone"] == "+358401234567" and app["stripped"] == []


def test_a_chat_of_an_unknown_channel_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="channel"):
        _build(chat_event(channel="UNKNOWN"))

"""Calls, recordings and consent events through the row builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import topics
from pipeline.policy import default_policy
from pipeline.schemas import default_catalog
from pipeline.serde import AvroSerializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import CALL_DETAIL_RECORD, CALL_RECORDING, CONSENT_CHANGED, COOKIE_CONSENT_CHANGED
from streams.consent_state import CONTACT, EMPTY, OBJECTED, RESTRICTED, ConsentChange, SubjectConsent, apply
from streams.exceptions import InvalidEvent
from streams.row_types import H_OBJECTED, H_RESTRICTED, Outcome
from streams.rows import RowBuilder
from tests.support.avro_strategies import records
from tests.support.raw_events import T0, cdr_event, envelope, recording_event

POLICY = default_policy()
KEYER = SubjectKeyer(bytes(range(32)))
CATALOG = default_catalog()
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _build(schema: str, event: dict[str, Any], tracked: SubjectConsent = EMPTY) -> Outcome:
    return RowBuilder(KEYER, POLICY).build(schema, event, lambda keys: tracked, NOW)


def _encodes(outcome: Outcome) -> None:
    for row in outcome.rows:
        if row.value is not None:
            assert row.schema is not None
            AvroSerializer(row.schema)(row.value)


def test_a_call_becomes_a_call_row_and_a_subject() -> None:
    outcome = _build(CALL_DETAIL_RECORD, cdr_event())
    call, subject = outcome.rows
    phone_key = KEYER.key(IdentifierKind.PHONE, "+358401234567")
    assert (call.topic, call.key) == (topics.CALL_ENRICHED.name, "call-1")
    assert call.value is not None and subject.value is not None
    assert call.value["caller_number"] == "+358401234567"
    assert call.value["subject_keys"] == [phone_key]
    assert call.value["duration_s"] == 180
    assert call.value["expires_at"] == POLICY.record("call").period.add_to(T0)
    assert (subject.topic, subject.key, subject.value["phone"]) == (topics.SUBJECTS.name, phone_key, "+358401234567")
    _encodes(outcome)


def test_a_withheld_caller_number_is_kept_as_delivered_without_a_key() -> None:
    outcome = _build(CALL_DETAIL_RECORD, cdr_event(caller_number="anonymous"))
    assert len(outcome.rows) == 1
    value = outcome.rows[0].value
    assert value is not None and value["caller_number"] == "anonymous" and value["subject_keys"] == []


def test_a_call_ending_before_it_started_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="ended_at"):
        _build(CALL_DETAIL_RECORD, cdr_event(ended_at=T0 - timedelta(seconds=1)))


@pytest.mark.parametrize(
    ("notice", "quarantined"),
    [
        (None, True),
        (T0 + timedelta(seconds=21), True),  # after recording started
        (T0 + timedelta(seconds=20), False),  # at the same moment: announced before any audio
        (T0 + timedelta(seconds=5), False),
    ],
)
def test_a_recording_is_stored_only_if_announced_before_it_started(notice: datetime | None, quarantined: bool) -> None:
    outcome = _build(CALL_RECORDING, recording_event(notice_played_at=notice))
    if quarantined:
        assert outcome.rows == [] and outcome.quarantine is not None
        assert outcome.quarantine.requirement == "recording_notice_before_start"
        assert outcome.quarantine.error.startswith("recording without prior notice")
    else:
        assert outcome.quarantine is None
        (row,) = outcome.rows
        assert row.value is not None and row.value["duration_s"] == 160
        recording_policy = POLICY.record("call_recording")
        assert row.value["expires_at"] == recording_policy.period.add_to(row.value["recording_started_at"])
        _encodes(outcome)


def test_restriction_and_objection_travel_as_headers() -> None:
    tracked = apply(EMPTY, ConsentChange(1, flags={RESTRICTED: True, OBJECTED: True}))
    for outcome in (
        _build(CALL_DETAIL_RECORD, cdr_event(), tracked),
        _build(CALL_RECORDING, recording_event(), tracked),
    ):
        assert dict(outcome.rows[0].headers) == {H_RESTRICTED: b"1", H_OBJECTED: b"1"}
    assert _build(CALL_DETAIL_RECORD, cdr_event()).rows[0].headers == ()


def _consent(**overrides: Any) -> dict[str, Any]:
    subject = {"email": "Maija@Example.fi", "phone": "040 123 4567", "person_number": None}
    subject |= {"app_username": None, "visitor_id": "v-1"}
    return (
        envelope(
            source_system="web-chat",
            subject=subject,
            purpose="CONTACT_DETAILS",
            status="WITHDRAWN",
            channel="WEB_CHAT",
            evidence="consent-text-v3",
        )
        | overrides
    )


def test_a_withdrawal_is_a_ledger_row_a_tracker_change_per_key_and_subject_tombstones() -> None:
    outcome = _build(CONSENT_CHANGED, _consent())
    email_key = KEYER.key(IdentifierKind.EMAIL, "maija@example.fi")
    phone_key = KEYER.key(IdentifierKind.PHONE, "+358401234567")
    visitor_key = KEYER.key(IdentifierKind.VISITOR_ID, "v-1")
    ledger, *tombstones = outcome.rows
    assert ledger.topic == topics.CONSENT_LEDGER.name and ledger.value is not None
    assert ledger.value["subject_keys"] == [email_key, phone_key, visitor_key]
    assert (ledger.value["kind"], ledger.value["purpose"], ledger.value["status"]) == (
        "CONSENT",
        "CONTACT_DETAILS",
        "WITHDRAWN",
    )
    assert ledger.value["expires_at"] == POLICY.record("consent_ledger").period.add_to(T0)
    assert [(t.topic, t.key, t.value) for t in tombstones] == [
        (topics.SUBJECTS.name, email_key, None),
        (topics.SUBJECTS.name, phone_key, None),
    ]
    assert [key for key, _ in outcome.consent_changes] == [email_key, phone_key, visitor_key]
    assert all(change.statements == {CONTACT: False} for _, change in outcome.consent_changes)
    _encodes(outcome)


def test_a_consent_given_is_ledgered_without_tombstones() -> None:
    outcome = _build(CONSENT_CHANGED, _consent(status="GIVEN", purpose="SERVICE_DEVELOPMENT"))
    assert len(outcome.rows) == 1
    assert outcome.consent_changes[0][1].statements == {"service_development": True}


def test_a_consent_without_any_usable_identifier_is_invalid() -> None:
    nobody = {"email": " ", "phone": "anonymous", "person_number": None, "app_username": None, "visitor_id": None}
    with pytest.raises(InvalidEvent, match="identifier"):
        _build(CONSENT_CHANGED, _consent(subject=nobody))


@pytest.mark.parametrize(
    ("functional", "analytics", "geolocation", "status"),
    [(True, False, False, "GIVEN"), (False, False, False, "WITHDRAWN"), (False, False, True, "GIVEN")],
)
def test_a_cookie_choice_is_a_cookie_ledger_row(
    functional: bool, analytics: bool, geolocation: bool, status: str
) -> None:
    event = envelope(
        visitor_id="v-1",
        cookie_consent={"functional": functional, "analytics": analytics, "marketing": False},
        geolocation_permission=geolocation,
        evidence="banner-v7",
    )
    outcome = _build(COOKIE_CONSENT_CHANGED, event)
    (ledger,) = outcome.rows
    assert ledger.value is not None
    assert (ledger.value["kind"], ledger.value["purpose"], ledger.value["status"]) == ("COOKIE", "COOKIES", status)
    assert (ledger.value["cookie_functional"], ledger.value["cookie_analytics"]) == (functional, analytics)
    assert ledger.value["geolocation_permission"] is geolocation
    assert outcome.consent_changes[0][0] == KEYER.key(IdentifierKind.VISITOR_ID, "v-1")
    _encodes(outcome)


def test_an_output_schema_is_not_an_input() -> None:
    with pytest.raises(InvalidEvent, match="not an input"):
        _build("cs.records.CallRecord", {})


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_valid_input_event_is_either_rows_that_fit_their_tables_or_invalid(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from(sorted(RowBuilder(KEYER, POLICY).schemas)))
    event = data.draw(records(CATALOG.get(schema)))
    try:
        outcome = _build(schema, event)
    except InvalidEvent:
        return
    _encodes(outcome)
    for row in outcome.rows:
        assert row.key


def test_a_recording_is_measured_from_its_start_to_its_end_and_invalid_if_it_ends_first() -> None:
    """The recording's duration_s and its error on an inverted interval (naming both fields)."""
    started = T0 + timedelta(seconds=20)
    outcome = _build(CALL_RECORDING, recording_event(recording_ended_at=started + timedelta(seconds=95)))
    value = outcome.rows[0].value
    assert value is not None and value["duration_s"] == 95
    with pytest.raises(InvalidEvent, match=r"^CallRecording\.recording_ended_at is before recording_started_at$"):
        _build(CALL_RECORDING, recording_event(recording_ended_at=started - timedelta(seconds=1)))

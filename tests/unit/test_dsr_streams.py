"""The streams stage's data-subject request core without a broker: the decision to act
(signature, age, replay, redelivery), what each request type changes on the Kafka side,
the rectified SubjectRecords, and the erased-keys table's drop decision."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.dsr import DpoSigner, RejectReason, RequestType, TrustedKeys, build_request
from pipeline.dsr_contract import Receipt, ReceiptStatus, request_digest
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import CALL_DETAIL_RECORD, CHAT_CONVERSATION, CONSENT_CHANGED
from streams.app import StreamsWorker, _Batch, _now
from streams.consent_state import EMPTY, apply, to_millis
from streams.erased_keys import is_erased, merge
from streams.rows import RowBuilder
from streams.subject_requests import (
    Seen,
    command_envelope,
    judge,
    plan,
    request_id_of,
    with_subjects,
)
from tests.support.raw_events import cdr_event, chat_event
from tests.support.streams_worker import streams_worker

KEYER = SubjectKeyer(bytes(range(32)))
BUILDER = RowBuilder(KEYER, default_policy())
NOW = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
MAX_AGE = default_policy().request_max_age
SIGNER = DpoSigner(Ed25519PrivateKey.generate())
TRUSTED = TrustedKeys.of(SIGNER.private_key.public_key())
WIRE = AvroSerializer("DataSubjectRequest")
EMAIL, PHONE, PERSON = "maija@example.fi", "+358401234567", "P1234"


def _key(kind: IdentifierKind, value: str) -> str:
    key = KEYER.key(kind, value)
    assert key is not None
    return key


def _request(request_type: RequestType, signer: DpoSigner = SIGNER, **kw: Any) -> dict[str, Any]:
    """A signed request as the stage reads it: through the wire and back."""
    identifiers = kw.pop("identifiers", {"email": EMAIL, "phone": PHONE})
    request = build_request(request_type, identifiers, requested_by="dpo.anna", reason="T-1", now=NOW, **kw)
    return AvroDeserializer()(WIRE(signer.sign(request))).value


def _rectification(identifiers: dict[str, str], field: str, value: str) -> dict[str, Any]:
    """A signed rectification of `field` to `value` for the subject of `identifiers`."""
    return _request(RequestType.RECTIFICATION, identifiers=identifiers, rectify_field=field, rectify_value=value)


def _judge(request: dict[str, Any] | None, seen: Seen | None = None, position: tuple[int, int] = (0, 5), **kw: Any):
    return judge(
        request,
        request_id_of(request, None),
        position=position,
        seen=seen,
        trusted=kw.pop("trusted", TRUSTED),
        now=kw.pop("now", NOW),
        max_age=MAX_AGE,
    )


# ---- deciding -------------------------------------------------------------------------


def test_a_signed_fresh_request_is_accepted_at_its_verification_time() -> None:
    verdict = _judge(_request(RequestType.ERASURE))
    assert verdict.accepted and verdict.first and verdict.at == NOW


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", RejectReason.BAD_SIGNATURE),
        ("tampered", RejectReason.BAD_SIGNATURE),
        ("unsigned", RejectReason.UNKNOWN_KEY),
        ("too_old", RejectReason.TOO_OLD),
        ("unreadable", RejectReason.INVALID),
        ("bad_phone", RejectReason.INVALID),
        ("no_usable_identifier", RejectReason.NO_IDENTIFIER),
    ],
)
def test_requests_that_must_not_run_are_rejected_with_their_reason(case: str, reason: RejectReason) -> None:
    request: dict[str, Any] | None = _request(RequestType.ERASURE)
    now = NOW
    if case == "forged":  # signed with a key that claims the DPO's id
        forger = DpoSigner(Ed25519PrivateKey.generate())
        request = {**_request(RequestType.ERASURE, forger), "key_id": SIGNER.key_id}
    elif case == "tampered":
        assert request is not None
        request = {**request, "subject": {**request["subject"], "email": "someone.else@example.fi"}}
    elif case == "unsigned":
        assert request is not None
        request = {**request, "key_id": "", "signature": b""}
    elif case == "too_old":
        now = NOW + MAX_AGE + timedelta(seconds=1)
    elif case == "unreadable":
        request = None
    elif case == "bad_phone":
        request = _request(RequestType.RECTIFICATION, rectify_field="phone", rectify_value="not a number")
    elif case == "no_usable_identifier":
        request = _request(RequestType.ERASURE, identifiers={"phone": "no number", "email": "  "})
    verdict = _judge(request, now=now)
    assert verdict.rejection is not None and verdict.rejection.reason is reason
    assert "example.fi" not in str(verdict.rejection)  # a reason names a check, never a value


def test_any_later_message_with_a_seen_id_is_a_replay_and_does_not_own_the_receipt() -> None:
    request = _request(RequestType.ERASURE)
    first = _judge(request, position=(0, 5))
    assert first.accepted
    seen = first.seen(0, 5)
    replay = _judge(request, seen=seen, position=(0, 9), now=NOW + timedelta(minutes=1))
    assert replay.rejection is not None and replay.rejection.reason is RejectReason.REPLAYED
    assert not replay.first  # its REJECTED receipt would overwrite the erasure's receipt
    # a rejected first message burns its id too
    forged = {**request, "reason": "changed"}
    rejected = _judge(forged, position=(0, 5))
    assert rejected.rejection is not None and rejected.first
    again = _judge(request, seen=rejected.seen(0, 5), position=(0, 6))
    assert again.rejection is not None and again.rejection.reason is RejectReason.REPLAYED


def test_the_same_message_read_again_after_a_crash_is_executed_again_at_its_first_time() -> None:
    request = _request(RequestType.ERASURE)
    seen = _judge(request).seen(0, 5)
    later = NOW + MAX_AGE  # even when the retry comes late
    retry = _judge(request, seen=Seen.from_json(json.loads(json.dumps(seen.to_json()))), now=later)
    assert retry.accepted and retry.first and retry.at == NOW


def test_the_request_id_of_an_unreadable_message_is_its_key_if_that_is_a_uuid() -> None:
    rid = uuid.uuid4()
    assert request_id_of(None, str(rid).encode()) == str(rid)
    assert request_id_of(None, b"not-a-uuid") is None
    assert request_id_of(None, None) is None


def test_a_rejection_receipt_holds_no_personal_data_and_encodes() -> None:
    request = _request(RequestType.ERASURE)
    verdict = _judge({**request, "reason": "changed"})
    assert verdict.rejection is not None
    rejected = ReceiptStatus.REJECTED
    value = Receipt.for_request(request, str(request["request_id"]), rejected, detail=str(verdict.rejection), now=NOW)
    value = value.to_value()
    assert value["requested_at"] == request["issued_at"] and value["completed_at"] == NOW
    assert value["store_counts"] == {} and value["detail"] == "signature does not verify"
    decoded = AvroDeserializer()(AvroSerializer("DsrReceipt")(value)).value
    assert decoded["status"] == "REJECTED" and decoded["request_type"] == "ERASURE"
    unreadable = Receipt.for_request(None, str(uuid.uuid4()), rejected, detail="x", now=NOW)
    assert unreadable.request_type == "UNKNOWN" and unreadable.requested_at == NOW


# ---- acting -----------------------------------------------------------------------------


def _subject(primary: str, **fields: Any) -> dict[str, Any]:
    record = dict.fromkeys(("name", "email", "phone", "person_number", "app_username", "postal_address"))
    record.update(fields, subject_key=primary, updated_at=NOW - timedelta(days=3), schema_version=1)
    record.setdefault("linked_keys", [])
    return record


def test_an_erasure_records_and_deletes_every_key_and_tombstones_linked_subject_records() -> None:
    request = _request(RequestType.ERASURE)
    work = plan(request, BUILDER, at=NOW, now=NOW)
    email_key, phone_key = _key(IdentifierKind.EMAIL, EMAIL), _key(IdentifierKind.PHONE, PHONE)
    assert work.subject_keys == [email_key, phone_key]
    assert work.erasures == work.consent_deletes == [email_key, phone_key]
    assert work.lookup_subjects and work.new_subject_key is None
    person_key = _key(IdentifierKind.PERSON_NUMBER, PERSON)
    found = {person_key: _subject(person_key, person_number=PERSON, email=EMAIL, linked_keys=[email_key])}
    with_subjects(work, request, found, BUILDER, now=NOW)
    assert [(row.topic, row.key, row.value) for row in work.rows] == [
        (topics.SUBJECTS.name, key, None) for key in (email_key, phone_key, person_key)
    ]


def test_rectifying_the_primary_email_moves_the_record_to_the_new_key() -> None:
    request = _rectification({"email": EMAIL}, "email", " Maija.M@Example.FI ")
    old_key, new_key = _key(IdentifierKind.EMAIL, EMAIL), _key(IdentifierKind.EMAIL, "maija.m@example.fi")
    visitor_key = _key(IdentifierKind.VISITOR_ID, "v-1")
    work = plan(request, BUILDER, at=NOW, now=NOW)
    assert work.new_subject_key == new_key and work.lookup_subjects
    found = {old_key: _subject(old_key, name="Maija", email=EMAIL, linked_keys=[visitor_key])}
    with_subjects(work, request, found, BUILDER, now=NOW)
    tombstone, record = work.rows
    assert (tombstone.key, tombstone.value) == (old_key, None)  # the old value was wrong: no longer an identifier
    assert record.key == new_key and record.value is not None
    assert record.value["email"] == "maija.m@example.fi" and record.value["name"] == "Maija"
    assert record.value["subject_key"] == new_key and record.value["linked_keys"] == [visitor_key]
    assert record.value["updated_at"] == NOW
    AvroSerializer("SubjectRecord")(record.value)
    assert work.consent_copies == {new_key: [old_key]}  # withdrawals and flags follow the subject


def test_rectifying_a_linked_phone_keeps_the_record_under_its_personnel_number() -> None:
    request = _rectification({"person_number": PERSON}, "phone", "050 765 4321")
    person_key, old_phone = _key(IdentifierKind.PERSON_NUMBER, PERSON), _key(IdentifierKind.PHONE, PHONE)
    new_phone = _key(IdentifierKind.PHONE, "+358507654321")
    found = {person_key: _subject(person_key, person_number=PERSON, phone=PHONE, linked_keys=[old_phone])}
    work = plan(request, BUILDER, at=NOW, now=NOW)
    with_subjects(work, request, found, BUILDER, now=NOW)
    (record,) = work.rows
    assert record.key == person_key and record.value is not None
    assert (record.value["phone"], record.value["linked_keys"]) == ("+358507654321", [new_phone])
    assert work.new_subject_key == new_phone and work.consent_copies == {new_phone: [old_phone]}


def test_rectifying_a_name_republishes_the_record_under_its_key() -> None:
    request = _request(RequestType.RECTIFICATION, identifiers={"email": EMAIL}, rectify_field="name", rectify_value="M")
    key = _key(IdentifierKind.EMAIL, EMAIL)
    work = plan(request, BUILDER, at=NOW, now=NOW)
    with_subjects(work, request, {key: _subject(key, name="Wrong", email=EMAIL)}, BUILDER, now=NOW)
    (record,) = work.rows
    assert record.key == key and record.value is not None and record.value["name"] == "M"
    assert work.new_subject_key is None and work.consent_copies == {}
    job = _request(RequestType.RECTIFICATION, rectify_field="job_title", rectify_value="CEO")
    assert not plan(job, BUILDER, at=NOW, now=NOW).lookup_subjects  # not in SubjectRecord: the sink's work


@pytest.mark.parametrize(
    ("request_type", "restricted", "objected"),
    [
        (RequestType.RESTRICTION, True, False),
        (RequestType.OBJECTION, True, True),
        (RequestType.RESTRICTION_LIFTED, False, False),
    ],
)
def test_restriction_and_objection_are_flags_of_the_consent_state(
    request_type: RequestType, restricted: bool, objected: bool
) -> None:
    """A restriction yesterday, then `request_type` now."""
    work = plan(_request(request_type), BUILDER, at=NOW, now=NOW)
    assert [key for key, _ in work.consent_changes] == work.subject_keys
    earlier = plan(_request(RequestType.RESTRICTION), BUILDER, at=NOW - timedelta(days=1), now=NOW)
    state = apply(apply(EMPTY, earlier.consent_changes[0][1]), work.consent_changes[0][1])
    assert (state.restricted, state.objected) == (restricted, objected)
    assert not work.rows and not work.erasures and not work.lookup_subjects


def test_withdrawing_all_consent_is_a_withdrawal_of_every_purpose_and_cookie_category() -> None:
    request = _request(RequestType.CONSENT_WITHDRAWAL, identifiers={"email": EMAIL, "visitor_id": "v-1"})
    work = plan(request, BUILDER, at=NOW, now=NOW)
    ledger = [row.value for row in work.rows if row.topic == topics.CONSENT_LEDGER.name]
    assert [(r["kind"], r["purpose"], r["status"], r["channel"]) for r in ledger if r] == [
        ("CONSENT", "CONTACT_DETAILS", "WITHDRAWN", "DPO"),
        ("CONSENT", "CALL_RECORDING", "WITHDRAWN", "DPO"),
        ("CONSENT", "SERVICE_DEVELOPMENT", "WITHDRAWN", "DPO"),
        ("COOKIE", "COOKIES", "WITHDRAWN", "DPO"),
    ]
    keys = work.subject_keys
    for row in ledger:
        assert row is not None and row["subject_keys"] == keys and row["event_time"] == NOW
        assert row["evidence"] == f"dsr:{request['request_id']}"
        AvroSerializer("ConsentLedgerRecord")(row)
    assert len({r["event_id"] for r in ledger if r}) == 4  # one ledger row each, stable under a retry
    assert plan(request, BUILDER, at=NOW, now=NOW).rows[0].value == work.rows[0].value
    tombstones = [row.key for row in work.rows if row.topic == topics.SUBJECTS.name]
    assert tombstones == [_key(IdentifierKind.EMAIL, EMAIL)]  # web contact details (as a ConsentChanged does)
    state = EMPTY
    for key, change in work.consent_changes:
        if key == keys[0]:
            state = apply(state, change)
    for name in ("contact_consent", "call_recording", "cookie.analytics", "geolocation"):
        assert state.withdrawn_since(name, to_millis(NOW))


def test_withdrawing_one_purpose_touches_only_that_purpose() -> None:
    request = _request(RequestType.CONSENT_WITHDRAWAL, consent_purpose="CALL_RECORDING")
    work = plan(request, BUILDER, at=NOW, now=NOW)
    assert [row.value["purpose"] for row in work.rows if row.value] == ["CALL_RECORDING"]
    assert not [row for row in work.rows if row.topic == topics.SUBJECTS.name]


def test_access_has_no_kafka_side_work_and_every_command_carries_the_contract_envelope() -> None:
    request = _request(RequestType.ACCESS)
    work = plan(request, BUILDER, at=NOW, now=NOW)
    assert not (work.rows or work.consent_changes or work.erasures or work.lookup_subjects)
    envelope = command_envelope(request, b"request bytes", work, {}, NOW)
    assert list(envelope.subject_keys) == work.subject_keys
    assert envelope.request_sha256 == request_digest(b"request bytes")
    assert (envelope.kafka_counts, envelope.verified_at, envelope.new_subject_key) == ({}, NOW, None)


# ---- the erased-keys table -----------------------------------------------------------------


def test_an_event_at_or_before_the_erasure_is_dropped_and_new_contact_is_kept() -> None:
    erased_at = to_millis(NOW)
    ledger = {"k1": erased_at}.get
    assert is_erased(ledger, ["k0", "k1"], erased_at)
    assert is_erased(ledger, ["k1"], erased_at - 1)
    assert not is_erased(ledger, ["k1"], erased_at + 1)
    assert not is_erased(ledger, ["k0"], 0)
    assert merge(None, 5) == 5 and merge(7, 5) == 7 and merge(5, 7) == 7


def test_the_erasure_scope_of_raw_events_is_every_identifier_they_name_and_their_policy_time() -> None:
    chat = chat_event(contact_consent=False)  # the email will be stripped: it still says whose chat it is
    keys, moment = BUILDER.erasure_scope(CHAT_CONVERSATION, chat)
    assert set(keys) == {
        _key(IdentifierKind.EMAIL, "maija@example.fi"),
        _key(IdentifierKind.PHONE, "040 123 4567"),
        _key(IdentifierKind.VISITOR_ID, "v-1"),
    }
    assert moment == to_millis(chat["started_at"])
    cdr = cdr_event()
    assert BUILDER.erasure_scope(CALL_DETAIL_RECORD, cdr) == (
        [_key(IdentifierKind.PHONE, "040 123 4567")],
        to_millis(cdr["started_at"]),
    )
    consent = {"event_time": NOW, "subject": {"email": EMAIL, "phone": None, "visitor_id": "v-1"}}
    assert BUILDER.erasure_scope(CONSENT_CHANGED, consent)[1] == to_millis(NOW)
    assert BUILDER.erasure_scope("cs.records.Unknown", {}) == ([], 0)


@pytest.fixture
def worker(tmp_path: Path) -> tuple[StreamsWorker, CollectorRegistry]:
    return streams_worker(tmp_path, KEYER)


def test_the_worker_drops_a_replayed_chat_of_an_erased_subject_and_keeps_new_contact(
    worker: tuple[StreamsWorker, CollectorRegistry],
) -> None:
    app, registry = worker
    chat = chat_event()
    email_key = _key(IdentifierKind.EMAIL, "maija@example.fi")
    app.erasures.data[email_key.encode()] = to_millis(chat["started_at"]) + 1  # as if restored from the changelog
    newer = chat_event(conversation_id="conv-2", started_at=chat["started_at"] + timedelta(seconds=1))
    batch = _Batch(_now())
    for offset, value in enumerate((chat, newer)):
        message = SimpleNamespace(
            topic=topics.CHAT.name,
            partition=0,
            offset=offset,
            key=b"k",
            value=AvroSerializer("ChatConversation")(value),
            headers=[],
            timestamp=time.time(),  # the Kafka record timestamp: appended now
        )
        app._process(message, batch)  # type: ignore[arg-type]
    app._count(batch)
    assert {out.key for out in batch.sends if out.topic == topics.CHAT_ENRICHED.name} == {b"conv-2"}
    labels = {"topic": topics.CHAT.name, "schema": "cs.records.ChatConversation"}
    assert registry.get_sample_value("records_streams_erased_dropped_total", labels) == 1
    assert registry.get_sample_value("records_streams_events_in_total", labels) == 2
    assert registry.get_sample_value("records_streams_dead_lettered_total", {**labels, "error_class": "x"}) is None

"""Data-subject requests in the streams stage: whether to act on a message of cs.dsr.v1,
and what a verified request does on the Kafka side. Pure: the caller passes the request,
what the seen-requests table says, the keys and the clock, and does all I/O
(`streams/dsr_stage.py`).

Deciding (`judge`): `pipeline.dsr.verify_request` (signature by a trusted DPO key, age,
replay), then what this stage needs to act (a known request type and consent purpose, a
rectified phone that is a phone number). The seen-requests table holds every request id
ever read, accepted or not, with the position of the message that carried it first:
- any later message with that id is a replay (REPLAYED), even if the first was rejected;
- the same message read again (the worker crashed before committing its offset) is not a
  replay: it is judged as it was the first time, with the first verification time, and
  executed again (every write is idempotent);
- only the first message of an id gets a receipt: a replay, or a forgery reusing a real
  id, must not overwrite the receipt of the request that id belongs to on the compacted
  receipts topic (a REJECTED receipt would hide a COMPLETED erasure).

Acting (`plan` + the `*_rows` helpers), all at `at`, the first verification time (also
the command envelope's `verified_at`):
- ERASURE: every subject key enters the erased-keys table; the keys leave the consent table;
  cs.subjects.v1 gets a tombstone for every key of the request and for every current
  SubjectRecord holding one of them as a linked key (a myStaff record under the personnel
  number holds the email too: it is removed whole);
- RECTIFICATION: every current SubjectRecord holding a key of the request is republished
  with the corrected value. For email or phone the record moves to the key of the new
  value when that identifier was its primary one, and the old key is tombstoned: a
  rectification says the old value was wrong, so it no longer identifies the subject
  (raw events still carrying it stay findable by it until their retention ends). The
  new key inherits the consent state (withdrawals, restriction) of the old ones.
  job_title and company_name are not in SubjectRecord: only the sink has work;
- RESTRICTION / OBJECTION / RESTRICTION_LIFTED: the `restricted` / `objected` flags of
  every key in the consent table (lifting clears both);
- CONSENT_WITHDRAWAL: for each purpose (null: all of them, and the cookie categories and
  geolocation permission too), exactly what a ConsentChanged WITHDRAWN on channel DPO
  does (ledger row on cs.consent.enriched.v1, consent table, a CONTACT_DETAILS withdrawal
  tombstones the email and phone subjects);
- ACCESS: nothing on the Kafka side (the sink exports).
Every verified request is then forwarded to the sink with an envelope the stage signs
(`command_envelope`; the contract is pipeline/dsr_contract.py).

Forgetting (`expired_requests`): the seen-requests table drops an id once its first
verification is older than the policy's request_max_age plus the clock skew and a margin
(`SEEN_MARGIN`); a message carrying it later is rejected by age (TOO_OLD) anyway, so
the table stays bounded without opening a replay window.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline import topics
from pipeline.dsr import (
    CLOCK_SKEW,
    RECTIFIABLE_FIELDS,
    DsrRejected,
    RejectReason,
    RequestType,
    TrustedKeys,
    from_millis,
    identifiers_of,
    verify_request,
)
from pipeline.dsr_contract import CommandEnvelope, request_digest
from pipeline.subject_keys import normalise
from pipeline.topics import SUBJECT_RECORD
from streams.consent_state import EMPTY, OBJECTED, PURPOSE_CONSENT, RESTRICTED, ConsentChange, to_millis
from streams.row_types import Outcome, Row
from streams.rows import RowBuilder

SEEN_MARGIN = timedelta(hours=1)
_REQUEST_TYPES = frozenset(RequestType)
_FLAGS: Mapping[str, Mapping[str, bool]] = {
    RequestType.RESTRICTION: {RESTRICTED: True},
    RequestType.OBJECTION: {OBJECTED: True},
    RequestType.RESTRICTION_LIFTED: {RESTRICTED: False, OBJECTED: False},
}
SUBJECT_RECORD_FIELDS = frozenset({"name", "email", "phone", "person_number", "app_username", "postal_address"})


# ---- deciding -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The seen-requests table's value for a request id: the message that carried it first."""

    partition: int
    offset: int
    verified_at: int  # epoch ms of the first verification
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "offset": self.offset, "at": self.verified_at, "ok": self.accepted}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Seen | None:
        if not raw:
            return None
        return cls(int(raw["partition"]), int(raw["offset"]), int(raw["at"]), bool(raw["ok"]))


@dataclass(frozen=True)
class Verdict:
    request_id: str | None
    at: datetime  # when the request takes (or took) effect: its first verification
    rejection: DsrRejected | None = None
    first: bool = True  # the first message of this id (or it again): it owns the receipt

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    def seen(self, partition: int, offset: int) -> Seen:
        return Seen(partition, offset, to_millis(self.at), self.accepted)


def request_id_of(request: Mapping[str, Any] | None, kafka_key: bytes | None) -> str | None:
    """The request's id; for an unreadable message its Kafka key, if that is a UUID."""
    if request is not None and request.get("request_id"):
        return str(request["request_id"])
    try:
        return str(uuid.UUID((kafka_key or b"").decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return None


def check_actionable(request: Mapping[str, Any]) -> None:
    """What this stage needs beyond `verify_request` to act; raises DsrRejected."""
    if all(normalise(kind, value) is None for kind, value in identifiers_of(request).items()):
        raise DsrRejected(RejectReason.NO_IDENTIFIER, "no identifier gives a subject key")
    request_type = request.get("request_type")
    if request_type not in _REQUEST_TYPES:
        raise DsrRejected(RejectReason.INVALID, "request_type is not one this pipeline executes")
    if request_type == RequestType.RECTIFICATION:
        kind = RECTIFIABLE_FIELDS[request["rectify_field"]]
        if kind is not None and normalise(kind, request["rectify_value"]) is None:
            raise DsrRejected(RejectReason.INVALID, f"rectify_value is not a valid {kind.value}")
    if request_type == RequestType.CONSENT_WITHDRAWAL and request.get("consent_purpose") not in (
        None,
        *PURPOSE_CONSENT,
    ):
        raise DsrRejected(RejectReason.INVALID, "consent_purpose is not one this pipeline knows")


def judge(
    request: Mapping[str, Any] | None,
    request_id: str | None,
    *,
    position: tuple[int, int],
    seen: Seen | None,
    trusted: TrustedKeys,
    now: datetime,
    max_age: timedelta,
) -> Verdict:
    """Whether the message at `position` (partition, offset) may be executed.

    `request` is None when the message could not be decoded as a DataSubjectRequest."""
    redelivered = seen is not None and (seen.partition, seen.offset) == position
    at = from_millis(seen.verified_at) if seen is not None and redelivered else now
    first = seen is None or redelivered
    if request is None:
        return Verdict(request_id, at, DsrRejected(RejectReason.INVALID, "not a readable DataSubjectRequest"), first)
    try:
        verify_request(request, trusted, now=at, max_age=max_age, seen=seen is not None and not redelivered)
        check_actionable(request)
    except DsrRejected as rejection:
        return Verdict(request_id, at, rejection, first)
    return Verdict(request_id, at)


def expired_requests(
    entries: Iterable[tuple[bytes, Mapping[str, Any] | None]], *, now: datetime, max_age: timedelta
) -> list[bytes]:
    """Ids of the seen-requests table (with their values) that may be forgotten: first
    verified longer ago than `max_age` + CLOCK_SKEW + SEEN_MARGIN (see the module docstring)."""
    horizon = now - max_age - CLOCK_SKEW - SEEN_MARGIN
    expired: list[bytes] = []
    for key, raw in entries:
        seen = Seen.from_json(raw)
        if seen is None or from_millis(seen.verified_at) < horizon:
            expired.append(key)
    return expired


# ---- acting ---------------------------------------------------------------------------


@dataclass
class KafkaWork:
    """What a verified request changes on the Kafka side, before the subject lookup."""

    subject_keys: list[str]
    rows: list[Row] = field(default_factory=list)
    consent_changes: list[tuple[str, ConsentChange]] = field(default_factory=list)
    consent_deletes: list[str] = field(default_factory=list)
    erasures: list[str] = field(default_factory=list)  # keys erased at the verdict's time
    # new subject key -> the keys whose consent state it inherits (rectified identifier)
    consent_copies: dict[str, list[str]] = field(default_factory=dict)
    new_subject_key: str | None = None
    # read the current SubjectRecords holding `subject_keys` (erasure, rectification)
    lookup_subjects: bool = False


def corrected_value(request: Mapping[str, Any]) -> str:
    """The rectified value as stores keep it (email lower-cased, phone E.164)."""
    kind = RECTIFIABLE_FIELDS[request["rectify_field"]]
    value = str(request["rectify_value"])
    normalised = normalise(kind, value) if kind is not None else value.strip()
    if normalised is None:  # check_actionable rejected it already
        raise DsrRejected(RejectReason.INVALID, "rectify_value")
    return normalised


def plan(request: Mapping[str, Any], builder: RowBuilder, *, at: datetime, now: datetime) -> KafkaWork:
    """The Kafka-side work of a verified request (see the module docstring)."""
    identifiers = identifiers_of(request)
    keyer = builder.keyer
    work = KafkaWork(subject_keys=keyer.keys(identifiers))
    request_type = request["request_type"]
    if request_type == RequestType.ERASURE:
        work.erasures = list(work.subject_keys)
        work.consent_deletes = list(work.subject_keys)
        work.lookup_subjects = True
    elif request_type == RequestType.RECTIFICATION:
        name = request["rectify_field"]
        kind = RECTIFIABLE_FIELDS[name]
        work.lookup_subjects = name in SUBJECT_RECORD_FIELDS
        if kind is not None:
            work.new_subject_key = keyer.key(kind, corrected_value(request))
    elif request_type in _FLAGS:
        change = ConsentChange(at=to_millis(at), flags=_FLAGS[request_type])
        work.consent_changes = [(key, change) for key in work.subject_keys]
    elif request_type == RequestType.CONSENT_WITHDRAWAL:
        _merge(work, withdrawal(request, builder, at=at, now=now))
    return work


def withdrawal(request: Mapping[str, Any], builder: RowBuilder, *, at: datetime, now: datetime) -> Outcome:
    """A consent withdrawal as the ConsentChanged WITHDRAWN events it stands for."""
    request_id = str(request["request_id"])
    purpose = request.get("consent_purpose")
    evidence = f"dsr:{request_id}"
    out = Outcome()
    for name in (purpose,) if purpose else tuple(PURPOSE_CONSENT):
        event = {
            "event_id": str(uuid.uuid5(uuid.UUID(request_id), name)),
            "event_time": at,
            "subject": request["subject"],
            "purpose": name,
            "status": "WITHDRAWN",
            "channel": "DPO",
            "evidence": evidence,
        }
        _extend(out, builder.ledger.consent(event, lambda _keys: EMPTY, now))
    if purpose is None:
        keys = builder.keyer.keys(identifiers_of(request))
        event_id = str(uuid.uuid5(uuid.UUID(request_id), "COOKIES"))
        _extend(out, builder.ledger.cookie_withdrawal(keys, event_id=event_id, at=at, evidence=evidence, now=now))
    return out


def _extend(out: Outcome, more: Outcome) -> None:
    out.rows += more.rows
    out.consent_changes += more.consent_changes


def _merge(work: KafkaWork, outcome: Outcome) -> None:
    work.rows += outcome.rows
    work.consent_changes += outcome.consent_changes


def with_subjects(
    work: KafkaWork,
    request: Mapping[str, Any],
    found: Mapping[str, Mapping[str, Any]],
    builder: RowBuilder,
    *,
    now: datetime,
) -> None:
    """The work that depends on the current SubjectRecords `found` (by Kafka key) that hold
    a key of the request: erasure tombstones, rectified records and consent inheritance."""
    if request["request_type"] == RequestType.ERASURE:
        work.rows += erasure_rows(work.subject_keys, found)
    elif request["request_type"] == RequestType.RECTIFICATION:
        work.rows += rectified_rows(request, found, builder, now=now)
        work.consent_copies.update(inherited_consent(request, found, builder))


def erasure_rows(subject_keys: Sequence[str], found: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    """Tombstones on cs.subjects.v1: every key of the request, and every record holding one."""
    return [Row(topics.SUBJECTS.name, key, None, None) for key in _unique([*subject_keys, *found])]


def rectified_rows(
    request: Mapping[str, Any], found: Mapping[str, Mapping[str, Any]], builder: RowBuilder, *, now: datetime
) -> list[Row]:
    """The corrected SubjectRecords (and tombstones of keys a record moved away from)."""
    name = request["rectify_field"]
    if name not in SUBJECT_RECORD_FIELDS:
        return []
    value = corrected_value(request)
    kind = RECTIFIABLE_FIELDS[name]
    keyer = builder.keyer
    rows: list[Row] = []
    for key, record in found.items():
        corrected = {**record, name: value, "updated_at": now}
        keys = [key, *record.get("linked_keys", ())]
        if kind is not None:
            old_key = keyer.key(kind, record.get(name))
            keys = [k for k in keys if k != old_key] + [keyer.key(kind, value) or ""]
        primary = builder.subject_key_of(corrected) or key
        corrected.update(subject_key=primary, linked_keys=_unique(k for k in keys if k and k != primary))
        if primary != key:
            rows.append(Row(topics.SUBJECTS.name, key, None, None))
        rows.append(Row(topics.SUBJECTS.name, primary, SUBJECT_RECORD, corrected))
    return rows


def inherited_consent(
    request: Mapping[str, Any], found: Mapping[str, Mapping[str, Any]], builder: RowBuilder
) -> dict[str, list[str]]:
    """A rectified email or phone: the new value's key -> the keys of the old values (the
    request's, and those the records held), whose consent state it inherits."""
    name = request["rectify_field"]
    kind = RECTIFIABLE_FIELDS[name]
    if kind is None:
        return {}
    key = builder.keyer.key
    new_key = key(kind, corrected_value(request))
    olds = [key(kind, identifiers_of(request).get(kind)), *(key(kind, r.get(name)) for r in found.values())]
    old_keys = _unique(k for k in olds if k is not None and k != new_key)
    return {new_key: old_keys} if new_key is not None and old_keys else {}


def command_envelope(
    request: Mapping[str, Any], value: bytes, work: KafkaWork, counts: Mapping[str, int], verified_at: datetime
) -> CommandEnvelope:
    """What the sink is to execute for a verified request whose message value is `value`
    (signed by the stage's command key: pipeline/dsr_contract.py)."""
    return CommandEnvelope(
        request_id=str(request["request_id"]),
        request_type=str(request["request_type"]),
        request_sha256=request_digest(value),
        subject_keys=tuple(work.subject_keys),
        verified_at=verified_at,
        kafka_counts=dict(counts),
        new_subject_key=work.new_subject_key,
    )


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))

"""What the row builders of the streams stage emit, and the names they share: the
enriched record schemas, one `Row` per message (a tombstone when its value is None), the
`Outcome` of one raw event, which raw fields hold an identifier and which output columns
are keyed, the headers that carry a restriction or objection, and the checks and helpers
every builder uses. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline import topics
from pipeline.subject_keys import IdentifierKind
from streams import contact_forms
from streams.consent_state import ConsentChange, SubjectConsent
from streams.exceptions import InvalidEvent

# Raw schema -> the policy record type whose `time_field` dates the event.
RAW_RECORD_TYPES: Mapping[str, str] = MappingProxyType(
    {
        topics.CHAT_CONVERSATION: "chat_conversation",
        topics.CALL_DETAIL_RECORD: "call",
        topics.CALL_RECORDING: "call_recording",
        topics.CONSENT_CHANGED: "consent_ledger",
        topics.COOKIE_CONSENT_CHANGED: "consent_ledger",
        topics.CONTACT_FORM_SUBMITTED: contact_forms.RECORD_TYPE,
    }
)
# Raw schema -> the raw field whose value is the id of the event's main row (its
# `event_id` column; the builders below use the same fields).
RAW_ROW_ID_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        topics.CHAT_CONVERSATION: "conversation_id",
        topics.CALL_DETAIL_RECORD: "call_id",
        topics.CALL_RECORDING: "recording_id",
        topics.CONSENT_CHANGED: "event_id",
        topics.COOKIE_CONSENT_CHANGED: "event_id",
        topics.CONTACT_FORM_SUBMITTED: contact_forms.ROW_ID_FIELD,
    }
)
# The identifiers of a person (SubjectIdentifiers, and the chat's own fields).
PERSON_IDENTIFIERS = ("person_number", "app_username", "email", "phone", "visitor_id")
# Raw fields holding an identifier, per raw schema ("subject." : inside the subject record).
RAW_IDENTIFIER_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        topics.CHAT_CONVERSATION: PERSON_IDENTIFIERS,
        topics.CALL_DETAIL_RECORD: ("caller_number",),
        topics.CALL_RECORDING: ("caller_number",),
        topics.CONSENT_CHANGED: tuple(f"subject.{name}" for name in PERSON_IDENTIFIERS),
        topics.COOKIE_CONSENT_CHANGED: ("visitor_id",),
        topics.CONTACT_FORM_SUBMITTED: contact_forms.RAW_IDENTIFIERS,
    }
)

CHAT_CHANNELS = ("WEB", "MYSTAFF_APP")  # UNKNOWN is the enum's fallback: no rule can be chosen for it

# Output columns holding a keyable identifier, and the kind of key they give.
KEYED_COLUMNS = {
    "person_number": IdentifierKind.PERSON_NUMBER,
    "app_username": IdentifierKind.APP_USERNAME,
    "email": IdentifierKind.EMAIL,
    "phone": IdentifierKind.PHONE,
    "visitor_id": IdentifierKind.VISITOR_ID,
    "caller_number": IdentifierKind.PHONE,
}
SUBJECT_PRIMARY = ("person_number", "app_username", "email", "phone")
SUBJECT_FIELDS = ("name", "email", "phone", "person_number", "app_username", "postal_address")

# Restriction (Art. 18) and objection (Art. 21) travel as headers of the emitted rows.
H_RESTRICTED = "cs.restricted"
H_OBJECTED = "cs.objected"

ConsentLookup = Callable[[Sequence[str]], SubjectConsent]


@dataclass(frozen=True)
class Row:
    """One message to emit: `value` None is a tombstone."""

    topic: str
    key: str
    schema: str | None
    value: dict[str, Any] | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class StrippedField:
    record_type: str
    field: str
    reason: str


@dataclass(frozen=True)
class Quarantine:
    requirement: str
    error: str


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    stripped: list[StrippedField] = field(default_factory=list)
    quarantine: Quarantine | None = None
    consent_changes: list[tuple[str, ConsentChange]] = field(default_factory=list)


def text_or_none(value: str | None) -> str | None:
    """Blank text is no value."""
    return value if value is not None and value.strip() else None


def require_ids(record: str, event: Mapping[str, Any], *names: str) -> None:
    """Ids that become row ids or Kafka keys must not be blank (InvalidEvent naming the field)."""
    for name in names:
        if not event[name].strip():
            raise InvalidEvent(f"{record}.{name} is empty")


def consent_headers(state: SubjectConsent) -> tuple[tuple[str, bytes], ...]:
    """The headers of a row whose subject has restricted or objected to processing."""
    headers: list[tuple[str, bytes]] = []
    if state.restricted:
        headers.append((H_RESTRICTED, b"1"))
    if state.objected:
        headers.append((H_OBJECTED, b"1"))
    return tuple(headers)

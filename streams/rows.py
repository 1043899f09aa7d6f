"""From one decoded raw event to what the streams stage emits: the rows to store (each
in the exact shape of its table's schema), the fields stripped, a quarantine verdict,
and the consent changes for the tracker. Pure: the caller passes the consent lookup and
the clock, and does all I/O.

- ChatConversation -> ChatConversationRecord + one ChatMessageRecord per message on
  cs.chat.enriched.v1 (key conversation_id), and a SubjectRecord on cs.subjects.v1;
- CallDetailRecord -> CallRecord on cs.call.enriched.v1 (key call_id), SubjectRecord of the caller;
- CallRecording -> CallRecordingRecord, or a quarantine verdict when a `requires` of the
  policy fails (the caller sends the original message to cs.quarantine.v1);
- ConsentChanged -> ConsentLedgerRecord on cs.consent.enriched.v1 (key: first subject
  key) and a tracker update per subject key; a CONTACT_DETAILS withdrawal also
  tombstones the cs.subjects.v1 entries keyed by its email and phone;
- CookieConsentChanged -> ConsentLedgerRecord (kind COOKIE), tracker update of the visitor key;
- ContactFormSubmitted -> ContactFormRecord on cs.contact-form.enriched.v1 (key
  submission_id) and a SubjectRecord, enforced like a web chat (streams/contact_forms.py).

Row ids (`event_id`) are the business ids, so a reprocessed or re-sent event replaces
its row: conversation_id, f"{conversation_id}:{message_id}", call_id, recording_id; a
ledger row is one consent event (its event_id). Transcript messages carry the subject
keys of their conversation, so an erasure finds them. SubjectRecords are keyed by the
subject key of the primary identifier (personnel number, app username, email, phone, in
that order; only surviving identifiers count), and the latest record of a key wins.

For the erased-keys table, `erasure_scope` gives the subject keys of every identifier a raw
event names (before enforcement: a stripped email still says whose event it is) and
the event's policy time (the `time_field` of its record type).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pipeline import topics
from pipeline.policy import Policy
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import (
    CALL_DETAIL_RECORD,
    CALL_RECORDING,
    CHAT_CONVERSATION,
    CONSENT_CHANGED,
    CONTACT_FORM_SUBMITTED,
    COOKIE_CONSENT_CHANGED,
)
from streams import contact_forms, enrich
from streams.consent_state import (
    COOKIE_CATEGORIES,
    GEOLOCATION,
    ConsentChange,
    SubjectConsent,
    to_millis,
)
from streams.enforce_consent import INVALID_PHONE, NO_CONSENT, ConsentInForce, Strip, enforce, rules_in_force
from streams.event_times import implausible_time
from streams.exceptions import InvalidEvent

_NS = "cs.records."

CHAT_CONVERSATION_RECORD = _NS + "ChatConversationRecord"
CHAT_MESSAGE_RECORD = _NS + "ChatMessageRecord"
CALL_RECORD = _NS + "CallRecord"
CALL_RECORDING_RECORD = _NS + "CallRecordingRecord"
CONSENT_LEDGER_RECORD = _NS + "ConsentLedgerRecord"
SUBJECT_RECORD = _NS + "SubjectRecord"

# Raw schema -> the policy record type whose `time_field` dates the event.
RAW_RECORD_TYPES: Mapping[str, str] = MappingProxyType(
    {
        CHAT_CONVERSATION: "chat_conversation",
        CALL_DETAIL_RECORD: "call",
        CALL_RECORDING: "call_recording",
        CONSENT_CHANGED: "consent_ledger",
        COOKIE_CONSENT_CHANGED: "consent_ledger",
        CONTACT_FORM_SUBMITTED: contact_forms.RECORD_TYPE,
    }
)
# Raw schema -> the raw field whose value is the id of the event's main row (its
# `event_id` column; the builders below use the same fields).
RAW_ROW_ID_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        CHAT_CONVERSATION: "conversation_id",
        CALL_DETAIL_RECORD: "call_id",
        CALL_RECORDING: "recording_id",
        CONSENT_CHANGED: "event_id",
        COOKIE_CONSENT_CHANGED: "event_id",
        CONTACT_FORM_SUBMITTED: contact_forms.ROW_ID_FIELD,
    }
)
# The identifiers of a person (SubjectIdentifiers, and the chat's own fields).
_PERSON_IDENTIFIERS = ("person_number", "app_username", "email", "phone", "visitor_id")
# Raw fields holding an identifier, per raw schema ("subject." : inside the subject record).
_RAW_IDENTIFIERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        CHAT_CONVERSATION: _PERSON_IDENTIFIERS,
        CALL_DETAIL_RECORD: ("caller_number",),
        CALL_RECORDING: ("caller_number",),
        CONSENT_CHANGED: tuple(f"subject.{name}" for name in _PERSON_IDENTIFIERS),
        COOKIE_CONSENT_CHANGED: ("visitor_id",),
        CONTACT_FORM_SUBMITTED: contact_forms.RAW_IDENTIFIERS,
    }
)

CHAT_CHANNELS = ("WEB", "MYSTAFF_APP")  # UNKNOWN is the enum's fallback: no rule can be chosen for it

# Output columns holding a keyable identifier, and the kind of key they give.
_KEYED = {
    "person_number": IdentifierKind.PERSON_NUMBER,
    "app_username": IdentifierKind.APP_USERNAME,
    "email": IdentifierKind.EMAIL,
    "phone": IdentifierKind.PHONE,
    "visitor_id": IdentifierKind.VISITOR_ID,
    "caller_number": IdentifierKind.PHONE,
}
_SUBJECT_PRIMARY = ("person_number", "app_username", "email", "phone")
_SUBJECT_FIELDS = ("name", "email", "phone", "person_number", "app_username", "postal_address")

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


def _requirement_notice_before_start(event: Mapping[str, Any]) -> str | None:
    notice = event.get("notice_played_at")
    if notice is None:
        return "recording without prior notice: no notice was played"
    if notice > event["recording_started_at"]:
        return "recording without prior notice: the notice was played after recording started"
    return None


# `requires` of a record policy -> check returning what failed (None: satisfied).
REQUIREMENTS: Mapping[str, Callable[[Mapping[str, Any]], str | None]] = {
    "recording_notice_before_start": _requirement_notice_before_start,
}


def _require(record: str, event: Mapping[str, Any], *names: str) -> None:
    """Ids that become row ids or Kafka keys must not be blank."""
    for name in names:
        if not event[name].strip():
            raise InvalidEvent(f"{record}.{name} is empty")


def _text(value: str | None) -> str | None:
    """Blank text is no value."""
    return value if value is not None and value.strip() else None


class RowBuilder:
    """Turns decoded raw events into outcomes. Holds the keyer, policy and city provider."""

    def __init__(self, keyer: SubjectKeyer, policy: Policy, cities: enrich.CityProvider | None = None) -> None:
        self.keyer = keyer
        self.cities = cities or enrich.NullCityProvider()
        self.chat_policy = policy.record("chat_conversation")
        self.message_policy = policy.record("chat_message")
        self.call_policy = policy.record("call")
        self.recording_policy = policy.record("call_recording")
        self.ledger_policy = policy.record("consent_ledger")
        self.forms = contact_forms.ContactFormRows(policy.record(contact_forms.RECORD_TYPE), self._row_keys)
        for record in (self.chat_policy, self.message_policy, self.call_policy, self.recording_policy):
            unknown = set(record.requires) - set(REQUIREMENTS)
            if unknown:
                raise InvalidEvent(f"policy {record.record_type} requires {sorted(unknown)}: no check implements it")
        # The rules that need a consent, per policy and channel, computed once.
        self._rules = {
            (record.record_type, channel): rules_in_force(record, channel)
            for record in (self.chat_policy, self.message_policy, self.call_policy, self.recording_policy)
            for channel in (None, *CHAT_CHANNELS)
        }
        self._time_fields = {name: policy.record(name).time_field for name in set(RAW_RECORD_TYPES.values())}
        self._earliest = policy.earliest_event_time
        self._max_future_skew = policy.max_future_skew
        self._handlers: dict[str, Callable[[dict[str, Any], ConsentLookup, datetime], Outcome]] = {
            CHAT_CONVERSATION: self.chat,
            CALL_DETAIL_RECORD: self.call,
            CALL_RECORDING: self.recording,
            CONSENT_CHANGED: self.consent,
            COOKIE_CONSENT_CHANGED: self.cookie_consent,
            CONTACT_FORM_SUBMITTED: self.contact_form,
        }

    @property
    def schemas(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def build(self, schema: str, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        """The outcome of one event; InvalidEvent (dead-lettered) for an event that cannot
        be stored, e.g. one with an implausible time (streams/event_times.py)."""
        handler = self._handlers.get(schema)
        if handler is None:
            raise InvalidEvent(f"{schema} is not an input of the streams stage")
        reason = implausible_time(
            schema, event, now=now, earliest=self._earliest, max_future_skew=self._max_future_skew
        )
        if reason is not None:
            raise InvalidEvent(reason)
        return handler(event, lookup, now)

    # ---- keys ---------------------------------------------------------------------

    def _keys(self, pairs: Iterable[tuple[str, str | None]]) -> list[str]:
        return self.keyer.keys_of((_KEYED[name], value) for name, value in pairs if name in _KEYED)

    def _row_keys(self, row: Mapping[str, Any]) -> list[str]:
        return self._keys((name, row.get(name)) for name in _KEYED if name in row)

    @staticmethod
    def _headers(state: SubjectConsent) -> tuple[tuple[str, bytes], ...]:
        headers: list[tuple[str, bytes]] = []
        if state.restricted:
            headers.append((H_RESTRICTED, b"1"))
        if state.objected:
            headers.append((H_OBJECTED, b"1"))
        return tuple(headers)

    def _normalise_phone(self, row: dict[str, Any], name: str, stripped: list[Strip]) -> None:
        raw = row.get(name)
        if raw is None:
            return
        normalised = enrich.e164(raw)
        row[name] = normalised
        if normalised is None:
            stripped.append(Strip(name, INVALID_PHONE))

    def subject_key_of(self, subject: Mapping[str, Any]) -> str | None:
        """The key a SubjectRecord with these fields lives under: its primary identifier's."""
        for name in _SUBJECT_PRIMARY:
            key = self.keyer.key(_KEYED[name], subject.get(name))
            if key is not None:
                return key
        return None

    def erasure_scope(self, schema: str, event: Mapping[str, Any]) -> tuple[list[str], int]:
        """The subject keys of every identifier a raw event names, and its policy time
        (epoch ms). No keys for a schema the stage does not take (`build` rejects it)."""
        names = _RAW_IDENTIFIERS.get(schema)
        if names is None:
            return [], 0
        pairs = []
        for name in names:
            holder, _, field_name = name.rpartition(".")
            value = (event.get(holder) or {}) if holder else event
            pairs.append((_KEYED[field_name], value.get(field_name)))
        time_field = self._time_fields[RAW_RECORD_TYPES[schema]]
        return self.keyer.keys_of(pairs), to_millis(event[time_field])

    def _subject(self, row: Mapping[str, Any], updated_at: datetime) -> Row | None:
        primary = self.subject_key_of(row)
        if primary is None:
            return None
        linked = [key for key in row["subject_keys"] if key != primary]
        value = {name: row.get(name) for name in _SUBJECT_FIELDS}
        value.update(subject_key=primary, linked_keys=linked, updated_at=updated_at, schema_version=1)
        return Row(topics.SUBJECTS.name, primary, SUBJECT_RECORD, value)

    # ---- chats ----------------------------------------------------------------------

    def chat(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        _require("ChatConversation", event, "conversation_id")
        if any(not message["message_id"].strip() for message in event["messages"]):
            raise InvalidEvent("ChatConversation.messages.message_id is empty")
        channel = event["channel"]
        if channel not in CHAT_CHANNELS:
            raise InvalidEvent(f"ChatConversation.channel: {channel} is not a chat channel the policy knows")
        device = enrich.parse_user_agent(event["user_agent"])
        ip_address = _text(event["ip_address"])
        cookies = event["cookie_consent"]
        row: dict[str, Any] = {
            "event_id": event["conversation_id"],
            "source_event_id": str(event["event_id"]),
            "subject_keys": [],
            "conversation_id": event["conversation_id"],
            "channel": channel,
            "started_at": event["started_at"],
            "ended_at": event["ended_at"],
            "message_count": len(event["messages"]),
            "name": _text(event["name"]),
            "email": _text(event["email"]),
            "phone": _text(event["phone"]),
            "job_title": _text(event["job_title"]),
            "company_name": _text(event["company_name"]),
            "person_number": _text(event["person_number"]),
            "app_username": _text(event["app_username"]),
            "postal_address": _text(event["postal_address"]),
            "app_name": _text(event["app_name"]),
            "app_version": _text(event["app_version"]),
            "visitor_id": _text(event["visitor_id"]),
            "user_agent": _text(event["user_agent"]),
            "ip_address": ip_address,
            "browser": device.browser,
            "os": device.os,
            "device_type": device.device_type,
            "isp_org": enrich.isp_org(event["network_name"]),
            "visit_count": event["visit_count"],
            "chat_count": event["chat_count"],
            "referrer_url": _text(event["referrer_url"]),
            "page_url": _text(event["page_url"]),
            "visit_duration_s": event["visit_duration_s"],
            "city": self.cities.city(ip_address) if ip_address else None,
            "latitude": event["latitude"],
            "longitude": event["longitude"],
        }
        # Every identifier the raw event names, stripped or not, finds its withdrawals.
        tracked = lookup(self._row_keys(row))
        captured = {
            "contact_consent": bool(event["contact_consent"]),
            GEOLOCATION: bool(event["geolocation_permission"]),
            **{name: bool(cookies[category]) for category, name in COOKIE_CATEGORIES.items()},
        }
        consent = ConsentInForce(captured, tracked, to_millis(row[self.chat_policy.time_field]))
        row, strips = enforce(
            self.chat_policy, row, channel=channel, consent=consent, rules=self._rules["chat_conversation", channel]
        )
        row["email"] = enrich.normalise_email(row["email"])
        self._normalise_phone(row, "phone", strips)
        row["subject_keys"] = self._row_keys(row)
        row.update(
            contact_consent=consent.holds("contact_consent"),
            cookie_functional=consent.holds("cookie.functional"),
            cookie_analytics=consent.holds("cookie.analytics"),
            cookie_marketing=consent.holds("cookie.marketing"),
            geolocation_permission=consent.holds(GEOLOCATION),
            stripped=[str(s) for s in strips],
            ingested_at=now,
        )
        row["expires_at"] = enrich.expires_at(self.chat_policy, row)
        headers = self._headers(tracked)
        key = event["conversation_id"]
        out = Outcome(
            rows=[Row(topics.CHAT_ENRICHED.name, key, CHAT_CONVERSATION_RECORD, row, headers)],
            stripped=[StrippedField("chat_conversation", s.field, s.reason) for s in strips],
        )
        for message in event["messages"]:
            message_row, message_strips = enforce(
                self.message_policy,
                {
                    "event_id": f"{key}:{message['message_id']}",
                    "source_event_id": str(event["event_id"]),
                    "subject_keys": row["subject_keys"],
                    "conversation_id": key,
                    "message_id": message["message_id"],
                    "channel": channel,
                    "sent_at": message["sent_at"],
                    "sender": message["sender"],
                    "agent_username": _text(message["agent_username"]),
                    "text": message["text"],
                },
                channel=channel,
                consent=consent,
                rules=self._rules["chat_message", channel],
            )
            message_row.update(stripped=[str(s) for s in message_strips], ingested_at=now)
            message_row["expires_at"] = enrich.expires_at(self.message_policy, message_row)
            out.rows.append(Row(topics.CHAT_ENRICHED.name, key, CHAT_MESSAGE_RECORD, message_row, headers))
            out.stripped += [StrippedField("chat_message", s.field, s.reason) for s in message_strips]
        subject = self._subject(row, event["event_time"])
        if subject is not None:
            out.rows.append(subject)
        return out

    # ---- calls ----------------------------------------------------------------------

    def call(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        _require("CallDetailRecord", event, "call_id")
        if event["ended_at"] < event["started_at"]:
            raise InvalidEvent("CallDetailRecord.ended_at is before started_at")
        caller = _text(event["caller_number"])
        row: dict[str, Any] = {
            "event_id": event["call_id"],
            "source_event_id": str(event["event_id"]),
            "subject_keys": [],
            "call_id": event["call_id"],
            "direction": event["direction"],
            "caller_number": caller,
            "service_number": event["service_number"],
            "started_at": event["started_at"],
            "answered_at": event["answered_at"],
            "ended_at": event["ended_at"],
            "duration_s": int((event["ended_at"] - event["started_at"]).total_seconds()),
            "answered_by_number": _text(event["answered_by_number"]),
            "answered_by_user": _text(event["answered_by_user"]),
        }
        tracked = lookup(self._row_keys(row))
        row, strips = enforce(self.call_policy, row, channel=None, consent=NO_CONSENT, rules=self._rules["call", None])
        # The call history is a legal obligation: a number that is not E.164 (e.g. a
        # withheld one) is kept as the operator delivered it, and gives no subject key.
        row["caller_number"] = enrich.e164(row["caller_number"]) or row["caller_number"]
        row["subject_keys"] = self._row_keys(row)
        row.update(stripped=[str(s) for s in strips], ingested_at=now)
        row["expires_at"] = enrich.expires_at(self.call_policy, row)
        out = Outcome(
            rows=[Row(topics.CALL_ENRICHED.name, event["call_id"], CALL_RECORD, row, self._headers(tracked))],
            stripped=[StrippedField("call", s.field, s.reason) for s in strips],
        )
        subject = self._subject(
            {"phone": row["caller_number"], "subject_keys": row["subject_keys"]}, event["event_time"]
        )
        if subject is not None:
            out.rows.append(subject)
        return out

    def recording(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        for requirement in self.recording_policy.requires:
            failure = REQUIREMENTS[requirement](event)
            if failure is not None:
                return Outcome(quarantine=Quarantine(requirement, failure))
        _require("CallRecording", event, "recording_id", "call_id")
        if event["recording_ended_at"] < event["recording_started_at"]:
            raise InvalidEvent("CallRecording.recording_ended_at is before recording_started_at")
        caller = _text(event["caller_number"])
        row: dict[str, Any] = {
            "event_id": event["recording_id"],
            "source_event_id": str(event["event_id"]),
            "subject_keys": [],
            "recording_id": event["recording_id"],
            "call_id": event["call_id"],
            "caller_number": caller,
            "recording_uri": event["recording_uri"],
            "notice_played_at": event["notice_played_at"],
            "recording_started_at": event["recording_started_at"],
            "recording_ended_at": event["recording_ended_at"],
            "duration_s": int((event["recording_ended_at"] - event["recording_started_at"]).total_seconds()),
        }
        tracked = lookup(self._row_keys(row))
        row, strips = enforce(
            self.recording_policy, row, channel=None, consent=NO_CONSENT, rules=self._rules["call_recording", None]
        )
        row["caller_number"] = enrich.e164(row["caller_number"]) or row["caller_number"]
        row["subject_keys"] = self._row_keys(row)
        row.update(stripped=[str(s) for s in strips], ingested_at=now)
        row["expires_at"] = enrich.expires_at(self.recording_policy, row)
        return Outcome(
            rows=[Row(topics.CALL_ENRICHED.name, event["call_id"], CALL_RECORDING_RECORD, row, self._headers(tracked))],
            stripped=[StrippedField("call_recording", s.field, s.reason) for s in strips],
        )

    # ---- contact forms --------------------------------------------------------------

    def contact_form(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        form = self.forms.build(event, lookup, now)
        row = form.value
        out = Outcome(
            rows=[
                Row(
                    topics.CONTACT_FORM_ENRICHED.name,
                    row["submission_id"],
                    contact_forms.CONTACT_FORM_RECORD,
                    row,
                    self._headers(form.tracked),
                )
            ],
            stripped=[StrippedField(contact_forms.RECORD_TYPE, s.field, s.reason) for s in form.strips],
        )
        subject = self._subject(row, event["event_time"])
        if subject is not None:
            out.rows.append(subject)
        return out

    # ---- consent --------------------------------------------------------------------

    def _ledger(self, event: Mapping[str, Any], keys: list[str], now: datetime, **values: Any) -> Row:
        row: dict[str, Any] = {
            "event_id": str(event["event_id"]),
            "source_event_id": str(event["event_id"]),
            "subject_keys": keys,
            "event_time": event["event_time"],
            "evidence": _text(event["evidence"]),
            "cookie_functional": False,
            "cookie_analytics": False,
            "cookie_marketing": False,
            "geolocation_permission": False,
            "stripped": [],
            "ingested_at": now,
            **values,
        }
        row["expires_at"] = enrich.expires_at(self.ledger_policy, row)
        return Row(topics.CONSENT_LEDGER.name, keys[0], CONSENT_LEDGER_RECORD, row)

    def consent(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        subject = event["subject"]
        keys = self._keys((name, subject[name]) for name in _PERSON_IDENTIFIERS)
        if not keys:
            raise InvalidEvent("ConsentChanged.subject has no usable identifier")
        ledger = self._ledger(
            event, keys, now, kind="CONSENT", purpose=event["purpose"], status=event["status"], channel=event["channel"]
        )
        change = ConsentChange.from_consent_changed(event)
        out = Outcome(rows=[ledger], consent_changes=[(key, change) for key in keys] if change.statements else [])
        if event["purpose"] == "CONTACT_DETAILS" and event["status"] == "WITHDRAWN":
            # Web contact details live in cs.subjects.v1 under the email or phone key.
            for name in ("email", "phone"):
                key = self.keyer.key(_KEYED[name], subject[name])
                if key is not None:
                    out.rows.append(Row(topics.SUBJECTS.name, key, None, None))
        return out

    def cookie_withdrawal(
        self, keys: list[str], *, event_id: str, at: datetime, evidence: str, now: datetime
    ) -> Outcome:
        """Every cookie category and the geolocation permission withdrawn for `keys` at
        `at` (a data-subject request withdrawing all consent): a COOKIE ledger row with
        every flag false, which the sink reads as a withdrawal of each of them."""
        event = {"event_id": event_id, "event_time": at, "evidence": evidence}
        ledger = self._ledger(event, keys, now, kind="COOKIE", purpose="COOKIES", status="WITHDRAWN", channel="DPO")
        names = (*COOKIE_CATEGORIES.values(), GEOLOCATION)
        change = ConsentChange(at=to_millis(at), statements=dict.fromkeys(names, False))
        return Outcome(rows=[ledger], consent_changes=[(key, change) for key in keys])

    def cookie_consent(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        key = self.keyer.key(IdentifierKind.VISITOR_ID, event["visitor_id"])
        if key is None:
            raise InvalidEvent("CookieConsentChanged.visitor_id is empty")
        cookies = event["cookie_consent"]
        flags = {
            "cookie_functional": bool(cookies["functional"]),
            "cookie_analytics": bool(cookies["analytics"]),
            "cookie_marketing": bool(cookies["marketing"]),
            "geolocation_permission": bool(event["geolocation_permission"]),
        }
        ledger = self._ledger(
            event,
            [key],
            now,
            kind="COOKIE",
            purpose="COOKIES",
            status="GIVEN" if any(flags.values()) else "WITHDRAWN",
            channel="WEB",
            **flags,
        )
        return Outcome(rows=[ledger], consent_changes=[(key, ConsentChange.from_cookie_consent_changed(event))])

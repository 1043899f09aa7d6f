"""From one decoded raw event to what the streams stage emits: the rows to store (each
in the exact shape of its table's schema), the fields stripped, a quarantine verdict,
and the consent changes for the tracker. Pure: the caller passes the consent lookup and
the clock, and does all I/O.

- ChatConversation -> ChatConversationRecord + one ChatMessageRecord per message on
  cs.chat.enriched.v1 (key conversation_id), and a SubjectRecord on cs.subjects.v1;
- CallDetailRecord -> CallRecord on cs.call.enriched.v1 (key call_id), SubjectRecord of the caller;
- CallRecording -> CallRecordingRecord, or a quarantine verdict when a `requires` of the
  policy fails (the caller sends the original message to cs.quarantine.v1) (both:
  streams/call_rows.py);
- ConsentChanged -> ConsentLedgerRecord on cs.consent.enriched.v1 (key: first subject
  key) and a tracker update per subject key; a CONTACT_DETAILS withdrawal also
  tombstones the cs.subjects.v1 entries keyed by its email and phone;
- CookieConsentChanged -> ConsentLedgerRecord (kind COOKIE), tracker update of the visitor
  key (both: streams/consent_ledger_rows.py);
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
the event's policy time (the `time_field` of its record type). The row and outcome types
and the names the builders share are in streams/row_types.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline import topics
from pipeline.policy import Policy
from pipeline.subject_keys import SubjectKeyer
from pipeline.topics import (
    CALL_DETAIL_RECORD,
    CALL_RECORDING,
    CHAT_CONVERSATION,
    CHAT_CONVERSATION_RECORD,
    CHAT_MESSAGE_RECORD,
    CONSENT_CHANGED,
    CONTACT_FORM_RECORD,
    CONTACT_FORM_SUBMITTED,
    COOKIE_CONSENT_CHANGED,
    SUBJECT_RECORD,
)
from streams import contact_forms, enrich
from streams.call_rows import CallRows
from streams.consent_ledger_rows import ConsentLedgerRows
from streams.consent_state import (
    COOKIE_CATEGORIES,
    GEOLOCATION,
    to_millis,
)
from streams.enforce_consent import INVALID_PHONE, ConsentInForce, Strip, enforce, rules_in_force
from streams.event_times import implausible_time
from streams.exceptions import InvalidEvent
from streams.record_requirements import REQUIREMENTS
from streams.row_types import (
    CHAT_CHANNELS,
    KEYED_COLUMNS,
    RAW_IDENTIFIER_FIELDS,
    RAW_RECORD_TYPES,
    SUBJECT_FIELDS,
    SUBJECT_PRIMARY,
    ConsentLookup,
    Outcome,
    Row,
    StrippedField,
    consent_headers,
    require_ids,
    text_or_none,
)

# The chat event's optional text fields, copied to the row in this order with blanks as NULL.
_CHAT_OPTIONAL_TEXT = (
    "name",
    "email",
    "phone",
    "job_title",
    "company_name",
    "person_number",
    "app_username",
    "postal_address",
    "app_name",
    "app_version",
    "visitor_id",
    "user_agent",
)


class RowBuilder:
    """Turns decoded raw events into outcomes. Holds the keyer, policy and city provider."""

    def __init__(self, keyer: SubjectKeyer, policy: Policy, cities: enrich.CityProvider | None = None) -> None:
        self.keyer = keyer
        self.cities = cities or enrich.NullCityProvider()
        self.chat_policy = policy.record("chat_conversation")
        self.message_policy = policy.record("chat_message")
        self.calls = CallRows(policy.record("call"), policy.record("call_recording"), self._row_keys)
        self.ledger = ConsentLedgerRows(keyer, policy.record("consent_ledger"))
        self.forms = contact_forms.ContactFormRows(policy.record(contact_forms.RECORD_TYPE), self._row_keys)
        for record in (self.chat_policy, self.message_policy, self.calls.call_policy, self.calls.recording_policy):
            unknown = set(record.requires) - set(REQUIREMENTS)
            if unknown:
                raise InvalidEvent(f"policy {record.record_type} requires {sorted(unknown)}: no check implements it")
        # The rules that need a consent, per policy and channel, computed once.
        self._rules = {
            (record.record_type, channel): rules_in_force(record, channel)
            for record in (self.chat_policy, self.message_policy)
            for channel in (None, *CHAT_CHANNELS)
        }
        self._time_fields = {name: policy.record(name).time_field for name in set(RAW_RECORD_TYPES.values())}
        self._earliest = policy.earliest_event_time
        self._max_future_skew = policy.max_future_skew
        self._handlers: dict[str, Callable[[dict[str, Any], ConsentLookup, datetime], Outcome]] = {
            CHAT_CONVERSATION: self.chat,
            CALL_DETAIL_RECORD: self.call,
            CALL_RECORDING: self.calls.recording,
            CONSENT_CHANGED: self.ledger.consent,
            COOKIE_CONSENT_CHANGED: self.ledger.cookie_consent,
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
        return self.keyer.keys_of((KEYED_COLUMNS[name], value) for name, value in pairs if name in KEYED_COLUMNS)

    def _row_keys(self, row: Mapping[str, Any]) -> list[str]:
        return self._keys((name, row.get(name)) for name in KEYED_COLUMNS if name in row)

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
        for name in SUBJECT_PRIMARY:
            key = self.keyer.key(KEYED_COLUMNS[name], subject.get(name))
            if key is not None:
                return key
        return None

    def erasure_scope(self, schema: str, event: Mapping[str, Any]) -> tuple[list[str], int]:
        """The subject keys of every identifier a raw event names, and its policy time
        (epoch ms). No keys for a schema the stage does not take (`build` rejects it)."""
        names = RAW_IDENTIFIER_FIELDS.get(schema)
        if names is None:
            return [], 0
        pairs = []
        for name in names:
            holder, _, field_name = name.rpartition(".")
            value = (event.get(holder) or {}) if holder else event
            pairs.append((KEYED_COLUMNS[field_name], value.get(field_name)))
        time_field = self._time_fields[RAW_RECORD_TYPES[schema]]
        return self.keyer.keys_of(pairs), to_millis(event[time_field])

    def _subject(self, row: Mapping[str, Any], updated_at: datetime) -> Row | None:
        primary = self.subject_key_of(row)
        if primary is None:
            return None
        linked = [key for key in row["subject_keys"] if key != primary]
        value = {name: row.get(name) for name in SUBJECT_FIELDS}
        value.update(subject_key=primary, linked_keys=linked, updated_at=updated_at, schema_version=1)
        return Row(topics.SUBJECTS.name, primary, SUBJECT_RECORD, value)

    # ---- chats ----------------------------------------------------------------------

    def chat(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        require_ids("ChatConversation", event, "conversation_id")
        if any(not message["message_id"].strip() for message in event["messages"]):
            raise InvalidEvent("ChatConversation.messages.message_id is empty")
        channel = event["channel"]
        if channel not in CHAT_CHANNELS:
            raise InvalidEvent(f"ChatConversation.channel: {channel} is not a chat channel the policy knows")
        device = enrich.parse_user_agent(event["user_agent"])
        ip_address = text_or_none(event["ip_address"])
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
            **{name: text_or_none(event[name]) for name in _CHAT_OPTIONAL_TEXT},
            "ip_address": ip_address,
            "browser": device.browser,
            "os": device.os,
            "device_type": device.device_type,
            "isp_org": enrich.isp_org(event["network_name"]),
            "visit_count": event["visit_count"],
            "chat_count": event["chat_count"],
            "referrer_url": text_or_none(event["referrer_url"]),
            "page_url": text_or_none(event["page_url"]),
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
        headers = consent_headers(tracked)
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
                    "agent_username": text_or_none(message["agent_username"]),
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
        out, row = self.calls.call(event, lookup, now)
        subject = self._subject(
            {"phone": row["caller_number"], "subject_keys": row["subject_keys"]}, event["event_time"]
        )
        if subject is not None:
            out.rows.append(subject)
        return out

    # ---- contact forms --------------------------------------------------------------

    def contact_form(self, event: dict[str, Any], lookup: ConsentLookup, now: datetime) -> Outcome:
        form = self.forms.build(event, lookup, now)
        row = form.value
        out = Outcome(
            rows=[
                Row(
                    topics.CONTACT_FORM_ENRICHED.name,
                    row["submission_id"],
                    CONTACT_FORM_RECORD,
                    row,
                    consent_headers(form.tracked),
                )
            ],
            stripped=[StrippedField(contact_forms.RECORD_TYPE, s.field, s.reason) for s in form.strips],
        )
        subject = self._subject(row, event["event_time"])
        if subject is not None:
            out.rows.append(subject)
        return out

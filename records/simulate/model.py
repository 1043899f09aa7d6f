"""The simulator's vocabulary: event kinds and their topics, the tags of cases enforcement must
catch, the traffic mix, the run's configuration and the event type it yields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.epoch_millis import from_millis as from_millis  # re-exported for the simulator modules
from pipeline.epoch_millis import to_millis as to_millis
from pipeline.exceptions import ConfigError
from pipeline.topics import (
    CALL,
    CALL_DETAIL_RECORD,
    CALL_RECORDING,
    CHAT,
    CHAT_CONVERSATION,
    CONSENT,
    CONSENT_CHANGED,
    CONTACT_FORM,
    CONTACT_FORM_SUBMITTED,
    COOKIE_CONSENT_CHANGED,
)

# Event kinds, their record type (None: raw bytes) and topic.
WEB_CHAT, APP_CHAT, CALL_KIND, RECORDING, CONSENT_KIND, COOKIE_CONSENT, MALFORMED = (
    "web_chat",
    "app_chat",
    "call",
    "recording",
    "consent",
    "cookie_consent",
    "malformed",
)
FORM = "contact_form"
KINDS: Mapping[str, tuple[str | None, str | None]] = {
    WEB_CHAT: (CHAT_CONVERSATION, CHAT.name),
    APP_CHAT: (CHAT_CONVERSATION, CHAT.name),
    CALL_KIND: (CALL_DETAIL_RECORD, CALL.name),
    RECORDING: (CALL_RECORDING, CALL.name),
    CONSENT_KIND: (CONSENT_CHANGED, CONSENT.name),
    COOKIE_CONSENT: (COOKIE_CONSENT_CHANGED, CONSENT.name),
    MALFORMED: (None, None),  # any of the chat, call and consent topics
    FORM: (CONTACT_FORM_SUBMITTED, CONTACT_FORM.name),
}
RAW_TOPICS = (CHAT.name, CALL.name, CONSENT.name, CONTACT_FORM.name)

# Malformed messages, each a different failure of the consumer's decoder.
NOT_AVRO = "not_avro"  # JSON or text where Avro was expected
TRUNCATED = "truncated"  # a single-object message cut in the middle of its body
UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # single-object framing, a writer schema nobody knows
UNREGISTERED_SCHEMA_ID = "unregistered_schema_id"  # Confluent framing, a schema id no registry has
MALFORMED_KINDS = (NOT_AVRO, TRUNCATED, UNKNOWN_FINGERPRINT, UNREGISTERED_SCHEMA_ID)
MALFORMED_HEADER = "sim.malformed"  # header naming the malformation, so a DLQ check can count them

# Tags: cases the streams stage must catch (strip or quarantine), counted per run.
DETAILS_WITHOUT_CONSENT = "contact_details_without_consent"
COOKIE_DATA_WITHOUT_CONSENT = "cookie_data_without_analytics_consent"
LOCATION_WITHOUT_PERMISSION = "location_without_geolocation_permission"
RECORDING_WITHOUT_NOTICE = "recording_without_notice"
NOTICE_AFTER_START = "recording_notice_after_start"
WITHHELD_CALLER = "withheld_caller_number"
RECORDING_OUTSIDE_CALL = "recording_outside_call"  # starts before the answer or ends after hang-up

UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits of a UUID
UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_SECOND = 1000
MINUTE = 60 * _SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class TrafficMix:
    """The proportions of a simulation run, in one place.

    The first block are shares of the generated events (they sum to 1); the rest are
    probabilities within a kind, including how often upstream sends something the
    pipeline must strip or quarantine.
    """

    web_chat: float = 0.29
    app_chat: float = 0.14
    call: float = 0.28
    recording: float = 0.08  # each follows an answered inbound call
    consent: float = 0.07
    cookie_consent: float = 0.10
    malformed: float = 0.01
    contact_form: float = 0.03  # web-site contact forms: a few % of the traffic
    # web chats
    known_web_visitor: float = 0.6  # a recurring person (else an anonymous visitor)
    contact_consent: float = 0.45  # the separate consent was given in the chat
    details_with_consent: float = 0.85  # ... and contact details were entered
    details_without_consent: float = 0.2  # details typed although consent was refused: to be stripped
    cookie_data_without_consent: float = 0.1  # cookie-derived fields sent without analytics consent
    geolocation_permission: float = 0.2
    location_with_permission: float = 0.8  # coordinates captured when permitted
    location_without_permission: float = 0.05  # coordinates sent anyway: to be stripped
    # calls
    answered: float = 0.85
    outbound: float = 0.05
    known_caller: float = 0.75  # a recurring person (else a one-off number)
    withheld_caller: float = 0.01
    recording_notice_missing: float = 0.02  # of recordings: to be quarantined
    recording_notice_late: float = 0.02  # of recordings: notice after recording started
    recording_outside_call: float = 0.01  # of recordings: before the answer or past hang-up (held)
    # consent changes
    consent_withdrawn: float = 0.3
    # contact forms
    form_contact_consent: float = 0.85  # the form's contact-details box ticked
    form_details_without_consent: float = 0.6  # details sent although the box was not ticked: to be stripped
    form_marketing_consent: float = 0.25

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"TrafficMix.{name} must be between 0 and 1")
        total = sum(self.shares().values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"the event shares of TrafficMix must sum to 1 (they sum to {total:.4f})")
        if self.recording > 0 and self.recording_probability() > 1.0:
            raise ConfigError("TrafficMix.recording is larger than the answered inbound calls allow")
        if self.recording_notice_missing + self.recording_notice_late + self.recording_outside_call > 1.0:
            raise ConfigError("TrafficMix: recording notice violations exceed all recordings")

    def shares(self) -> dict[str, float]:
        """Share of events per kind."""
        return {
            WEB_CHAT: self.web_chat,
            APP_CHAT: self.app_chat,
            CALL_KIND: self.call,
            RECORDING: self.recording,
            CONSENT_KIND: self.consent,
            COOKIE_CONSENT: self.cookie_consent,
            MALFORMED: self.malformed,
            FORM: self.contact_form,
        }

    def recording_probability(self) -> float:
        """Probability that an answered inbound call is recorded, so recordings get their share."""
        recordable = self.call * self.answered * (1.0 - self.outbound)
        return self.recording / recordable if recordable else 0.0

    def schema_shares(self) -> dict[str, float]:
        """Expected share of events per record type ('malformed' for raw bytes)."""
        out: dict[str, float] = {}
        for kind, share in self.shares().items():
            schema = KINDS[kind][0] or MALFORMED
            out[schema] = out.get(schema, 0.0) + share
        return out


def _default_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class SimulationConfig:
    events: int
    seed: int = 1
    now: datetime = field(default_factory=_default_now)
    span_days: float = 1095.0
    people: int | None = None  # size of the recurring-person pool (None: from `events`)
    mix: TrafficMix = field(default_factory=TrafficMix)

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ConfigError("the number of events must not be negative")
        if self.span_days <= 0.1:
            raise ConfigError("the time span must be more than 0.1 days")
        if self.now.tzinfo is None:
            raise ConfigError("'now' must carry a time zone")
        if self.people is not None and self.people < 1:
            raise ConfigError("the person pool needs at least one person")

    @property
    def pool_size(self) -> int:
        """Recurring people: about one per 20 events, between 50 and 5,000."""
        return self.people if self.people is not None else min(5000, max(50, self.events // 20))

    @property
    def window(self) -> tuple[datetime, datetime]:
        """Every timestamp of every event lies in this interval."""
        return self.now - timedelta(days=self.span_days), self.now


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One generated message: a record of `schema_name`, or `raw` bytes when malformed."""

    kind: str
    topic: str
    schema_name: str | None
    record: dict[str, Any] | None
    raw: bytes | None = None
    key: str | None = None  # only for raw bytes; records get theirs from event_producer.event_key
    headers: tuple[tuple[str, bytes], ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def malformed(self) -> bool:
        return self.schema_name is None

"""Every Kafka topic of the pipeline, with its partitions and configuration.

This module is the single source of topic names and topic configs: producers, stream
processors, the sink, `records topics ensure` and `records topics audit` all read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType

from pipeline.exceptions import ConfigError
from pipeline.policy import Policy

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# faust names a table's changelog "<app id>-<table>-changelog"; both parts live here so
# the streams app and the topic tooling agree on it.
STREAMS_APP_ID = "cs-streams"
CONSENT_TABLE = "consent"
ERASURES_TABLE = "erasures"
DSR_SEEN_TABLE = "dsr-seen"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    description: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    personal_data: bool = True
    # Full names of the Avro record types written to this topic (empty: not Avro, e.g.
    # faust changelogs, or any type as in the dead-letter topic).
    value_schemas: tuple[str, ...] = ()

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


def _delete(retention_ms: int, segment_ms: int = DAY_MS) -> Mapping[str, str]:
    # Deletion works on closed segments: rolling daily keeps the worst case at
    # retention + one segment.
    return MappingProxyType(
        {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "segment.ms": str(segment_ms),
        }
    )


def _compact() -> Mapping[str, str]:
    # A bounded max.compaction.lag.ms plus a short segment.ms guarantee that a tombstone
    # replaces the erased subject's records within a day; the tombstone itself (a subject
    # key, no plaintext) is kept delete.retention.ms so every consumer sees it.
    return MappingProxyType(
        {
            "cleanup.policy": "compact",
            "segment.ms": str(HOUR_MS),
            "min.compaction.lag.ms": "0",
            "max.compaction.lag.ms": str(DAY_MS),
            "delete.retention.ms": str(DAY_MS),
            "min.cleanable.dirty.ratio": "0.1",
        }
    )


_NS = "cs.records."
# The raw events upstream systems send (what the simulator builds and the streams stage reads).
CHAT_CONVERSATION = _NS + "ChatConversation"
CALL_DETAIL_RECORD = _NS + "CallDetailRecord"
CALL_RECORDING = _NS + "CallRecording"
CONSENT_CHANGED = _NS + "ConsentChanged"
COOKIE_CONSENT_CHANGED = _NS + "CookieConsentChanged"
CONTACT_FORM_SUBMITTED = _NS + "ContactFormSubmitted"
# The enriched records the streams stage emits, each in the shape of its table's rows.
CHAT_CONVERSATION_RECORD = _NS + "ChatConversationRecord"
CHAT_MESSAGE_RECORD = _NS + "ChatMessageRecord"
CALL_RECORD = _NS + "CallRecord"
CALL_RECORDING_RECORD = _NS + "CallRecordingRecord"
CONSENT_LEDGER_RECORD = _NS + "ConsentLedgerRecord"
SUBJECT_RECORD = _NS + "SubjectRecord"
CONTACT_FORM_RECORD = _NS + "ContactFormRecord"


def _kept_a_week(name: str, key: str, partitions: int, description: str, *schemas: str) -> TopicSpec:
    """A delete-policy topic kept seven days (raw, enriched, request and hold-back topics)."""
    return TopicSpec(name, key, description, partitions, _delete(7 * DAY_MS), value_schemas=schemas)


def _changelog(table: str, key: str, partitions: int, description: str, personal_data: bool = True) -> TopicSpec:
    """The compacted changelog faust keeps for a table of the streams app (default app id)."""
    name = f"{STREAMS_APP_ID}-{table}-changelog"
    return TopicSpec(name, key, description, partitions, _compact(), personal_data=personal_data)


CHAT = _kept_a_week("cs.chat.v1", "conversation id", 3, "raw chat events (web widget, myStaff app)", CHAT_CONVERSATION)
CALL = _kept_a_week(
    "cs.call.v1", "call id", 3, "call detail records and recording events", CALL_DETAIL_RECORD, CALL_RECORDING
)
CONSENT = _kept_a_week(
    "cs.consent.v1", "subject key", 3, "consent and cookie-consent changes", CONSENT_CHANGED, COOKIE_CONSENT_CHANGED
)
# Requests carry identifiers; older than the policy's request_max_age (72 h) they are
# rejected anyway, so a week covers replays of the topic and keeps linger in bound.
DSR = _kept_a_week(
    "cs.dsr.v1", "request id", 1, "signed data-subject requests from the DPO", _NS + "DataSubjectRequest"
)
# Not in the first architecture draft: requests the streams stage verified, forwarded to
# the ClickHouse sink with the subject keys (only the streams stage holds the pepper) and
# the Kafka-side counts in an envelope signed with the stage's command key (headers
# dsr.command and dsr.command.signature: pipeline/dsr_contract.py).
DSR_COMMANDS = _kept_a_week(
    "cs.dsr.commands.v1",
    "request id",
    1,
    "verified data-subject requests for the storage side (original request bytes + signed envelope)",
    _NS + "DataSubjectRequest",
)
CHAT_ENRICHED = _kept_a_week(
    "cs.chat.enriched.v1",
    "conversation id",
    3,
    "enforced, enriched chat records",
    CHAT_CONVERSATION_RECORD,
    CHAT_MESSAGE_RECORD,
)
CALL_ENRICHED = _kept_a_week(
    "cs.call.enriched.v1", "call id", 3, "enforced, enriched call records", CALL_RECORD, CALL_RECORDING_RECORD
)
# Not in the first architecture draft: the consent ledger table needs subject keys, which
# only the streams stage (holder of the pepper) computes, so its rows get their own topic.
CONSENT_LEDGER = _kept_a_week(
    "cs.consent.enriched.v1",
    "subject key",
    3,
    "consent ledger rows (proof of consent) with subject keys",
    CONSENT_LEDGER_RECORD,
)
QUARANTINE = _kept_a_week("cs.quarantine.v1", "source key", 1, "events held back by policy")
SUBJECTS = TopicSpec(
    "cs.subjects.v1",
    "subject key",
    "current contact details per subject",
    3,
    _compact(),
    value_schemas=(SUBJECT_RECORD,),
)
CONSENT_CHANGELOG = _changelog(CONSENT_TABLE, "subject key", 3, "faust changelog of the consent table")
# The erased-keys table: subject key -> erasure time (no plaintext); never tombstoned, it is
# what keeps a replay of the raw topics from bringing an erased subject back.
ERASURES_CHANGELOG = _changelog(
    ERASURES_TABLE, "subject key", 3, "faust changelog of the erased-keys table (subject key -> erased at)"
)
DSR_SEEN_CHANGELOG = _changelog(
    DSR_SEEN_TABLE,
    "request id",
    1,
    "faust changelog of the data-subject request ids seen (replay protection)",
    personal_data=False,
)
# The streams app's faust changelogs. Their names follow the app id (`{app_id}-{table}-changelog`).
STREAMS_CHANGELOGS = (CONSENT_CHANGELOG, ERASURES_CHANGELOG, DSR_SEEN_CHANGELOG)


def changelogs_for(app_id: str) -> tuple[TopicSpec, ...]:
    """The changelog topics of a streams app id (the specs above for the default one)."""
    prefix = STREAMS_APP_ID + "-"
    return tuple(replace(spec, name=f"{app_id}-{spec.name[len(prefix):]}") for spec in STREAMS_CHANGELOGS)


DSR_RECEIPTS = TopicSpec(
    "cs.dsr.receipts.v1",
    "request id",
    "data-subject request receipts",
    1,
    _compact(),
    personal_data=False,
    value_schemas=(_NS + "DsrReceipt",),
)
DLQ = _kept_a_week("cs.dlq.v1", "original key", 1, "undecodable or invalid input with error headers")
# Contact forms of the web site (notice: "lomakeyhteydenotto"), added after chats and calls.
CONTACT_FORM = _kept_a_week(
    "cs.contact-form.v1", "submission id", 3, "raw contact-form submissions (web site)", CONTACT_FORM_SUBMITTED
)
CONTACT_FORM_ENRICHED = _kept_a_week(
    "cs.contact-form.enriched.v1", "submission id", 3, "enforced, enriched contact-form records", CONTACT_FORM_RECORD
)

# What the streams stage reads and writes for records (its DSR topics and changelogs aside):
# the workers create them, the ACL model grants them (pipeline/topic_access.py).
STREAMS_INPUTS = (CHAT, CALL, CONSENT, CONTACT_FORM)
STREAMS_OUTPUTS = (CHAT_ENRICHED, CALL_ENRICHED, CONSENT_LEDGER, SUBJECTS, QUARANTINE, DLQ, CONTACT_FORM_ENRICHED)


ALL_TOPICS: tuple[TopicSpec, ...] = (
    CHAT,
    CALL,
    CONSENT,
    DSR,
    DSR_COMMANDS,
    CHAT_ENRICHED,
    CALL_ENRICHED,
    CONSENT_LEDGER,
    QUARANTINE,
    SUBJECTS,
    CONSENT_CHANGELOG,
    ERASURES_CHANGELOG,
    DSR_SEEN_CHANGELOG,
    DSR_RECEIPTS,
    DLQ,
    CONTACT_FORM,
    CONTACT_FORM_ENRICHED,
)


# How much longer than any topic can replay a person's events the erased-keys tables keep an
# erased subject key (a restored backup, a consumer that was stopped a while).
ERASED_KEYS_MARGIN = timedelta(days=7)


def longest_replay(specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> timedelta:
    """How long after it was written a delete-policy topic with personal data can still hand
    a message to a consumer: its retention.ms plus one segment.ms (deletion works on closed
    segments). An erased subject's events can be replayed from the topics that long."""
    longest = 0
    for spec in specs:
        if spec.compacted or not spec.personal_data or "retention.ms" not in spec.config:
            continue
        longest = max(longest, int(spec.config["retention.ms"]) + int(spec.config.get("segment.ms", "0")))
    return timedelta(milliseconds=longest)


def erased_keys_retention(policy: Policy) -> timedelta:
    """How long both erased-keys tables keep an erased subject key: the policy's
    `erasure.erased_keys_retention_days`, which must cover `longest_replay()` plus
    ERASED_KEYS_MARGIN, or an erased subject could come back from a replay after its
    key left the erased-keys table (ConfigError, one line)."""
    needed = longest_replay() + ERASED_KEYS_MARGIN
    if policy.erased_keys_retention < needed:
        raise ConfigError(
            f"policy erasure.erased_keys_retention_days must be at least {-(-needed // timedelta(days=1))}: "
            "topics can replay a person's events that long, plus a margin"
        )
    return policy.erased_keys_retention


def by_name(name: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def topic_for_schema(full_name: str) -> TopicSpec:
    """The topic a record type is written to."""
    for spec in ALL_TOPICS:
        if full_name in spec.value_schemas:
            return spec
    raise KeyError(full_name)

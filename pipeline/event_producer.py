"""Producing the pipeline's input events: the library upstream systems (and `records
produce` / `records simulate`) write with.

- `event_key` is the Kafka key rule of the architecture, as a pure function:
  ChatConversation -> conversation_id; CallDetailRecord and CallRecording -> call_id;
  ContactFormSubmitted -> submission_id;
  ConsentChanged -> the subject key of its first usable identifier (email, phone,
  person_number, app_username, visitor_id, in that order); CookieConsentChanged -> the
  subject key of visitor_id; DataSubjectRequest and DsrReceipt -> request_id.
- `EventEncoder` picks the topic (`topics.topic_for_schema`) and the key and encodes the
  value (one `AvroSerializer` per schema); no I/O.
- `EventProducer` sends what the encoder made through the idempotent producer wrapper
  and counts delivery reports: `flush()` returns how many were sent, delivered and failed
  per topic, with the Kafka error codes, never a value.
- `encode_json_line` turns one line of `records produce` input (a JSON object with the
  record's fields, plus `_schema` when the topic carries several record types) into a
  message, or lists everything wrong with it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.avro_json import RecordValidationError, from_json
from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError, RecordsError
from pipeline.kafka.closed_on_exit import ClosedOnExit
from pipeline.kafka.producer import Headers, KafkaProducer, MessageKey
from pipeline.schemas import AvroSchema
from pipeline.serde import AvroSerializer, Serde, SerdeError
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import ALL_TOPICS, TopicSpec, topic_for_schema


class EventKeyError(RecordsError):
    """No Kafka key can be chosen for a record; names the schema and field, not the value."""

    def __init__(self, schema: str, field_name: str, problem: str) -> None:
        super().__init__(f"{schema}: field '{field_name}': {problem}")
        self.schema = schema
        self.field = field_name
        self.problem = problem


# Record types keyed by one of their own id fields.
_ID_KEYS: Mapping[str, str] = {
    "ChatConversation": "conversation_id",
    "CallDetailRecord": "call_id",
    "CallRecording": "call_id",
    "DataSubjectRequest": "request_id",
    "DsrReceipt": "request_id",
    "ContactFormSubmitted": "submission_id",
}
# ConsentChanged: the first usable identifier of its subject, in this order.
CONSENT_KEY_ORDER: tuple[IdentifierKind, ...] = (
    IdentifierKind.EMAIL,
    IdentifierKind.PHONE,
    IdentifierKind.PERSON_NUMBER,
    IdentifierKind.APP_USERNAME,
    IdentifierKind.VISITOR_ID,
)
_SUBJECT_KEYED = frozenset({"ConsentChanged", "CookieConsentChanged"})
KEYED_SCHEMAS: frozenset[str] = frozenset(_ID_KEYS) | _SUBJECT_KEYED


def needs_keyer(schema_name: str) -> bool:
    """Whether records of this type are keyed by a subject key (so need the pepper)."""
    return schema_name.rsplit(".", 1)[-1] in _SUBJECT_KEYED


def event_key(schema_name: str, record: Mapping[str, Any], keyer: SubjectKeyer | None) -> str:
    """The Kafka key of a record of `schema_name` (short or full name)."""
    name = schema_name.rsplit(".", 1)[-1]
    id_field = _ID_KEYS.get(name)
    if id_field is not None:
        value = record.get(id_field)
        id_key = "" if value is None else str(value)
        if not id_key.strip():
            raise EventKeyError(name, id_field, "is empty; it is the Kafka key")
        return id_key
    if name not in _SUBJECT_KEYED:
        raise EventKeyError(name, "(record)", "no Kafka key rule for this record type; it is not a pipeline input")
    if keyer is None:
        raise EventKeyError(name, "(record)", "is keyed by subject key: set RECORDS_PEPPER_FILE (or RECORDS_PEPPER)")
    if name == "CookieConsentChanged":
        visitor_key = keyer.key(IdentifierKind.VISITOR_ID, record.get("visitor_id"))
        if visitor_key is None:
            raise EventKeyError(name, "visitor_id", "is empty; its subject key is the Kafka key")
        return visitor_key
    subject = record.get("subject")
    if isinstance(subject, Mapping):
        for kind in CONSENT_KEY_ORDER:
            subject_key = keyer.key(kind, subject.get(kind.value))
            if subject_key is not None:
                return subject_key
    raise EventKeyError(
        name, "subject", "has no usable identifier (email, phone, person_number, app_username, visitor_id)"
    )


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One message ready for Kafka."""

    topic: str
    key: str
    value: bytes
    schema: str


class EventEncoder:
    """Topic, key and Avro bytes of input records, in the upstream wire format of `serde`
    (Confluent with a schema registry, single-object encoding without one)."""

    def __init__(self, *, serde: Serde | None = None, keyer: SubjectKeyer | None = None) -> None:
        self.keyer = keyer
        self.serde = serde or Serde()
        self.catalog = self.serde.catalog
        self._topics: dict[str, TopicSpec] = {}

    def schema(self, schema: str | AvroSchema) -> AvroSchema:
        return schema if isinstance(schema, AvroSchema) else self.catalog.get(schema)

    def _serializer(self, schema: str | AvroSchema) -> tuple[AvroSerializer, TopicSpec]:
        serializer = self.serde.input_encoder(self.schema(schema))
        topic = self._topics.get(serializer.schema.full_name)
        if topic is None:
            try:
                topic = self._topics[serializer.schema.full_name] = topic_for_schema(serializer.schema.full_name)
            except KeyError:
                raise SerdeError(f"{serializer.schema.full_name} is not written to any topic of the pipeline") from None
        return serializer, topic

    def topic(self, schema: str | AvroSchema) -> TopicSpec:
        return self._serializer(schema)[1]

    def encode(self, schema: str | AvroSchema, record: Mapping[str, Any]) -> EncodedEvent:
        """Raises EventKeyError or SerdeError (naming fields, never values)."""
        serializer, topic = self._serializer(schema)
        full_name = serializer.schema.full_name
        key = event_key(full_name, record, self.keyer)
        return EncodedEvent(topic.name, key, serializer(record), full_name)


SCHEMA_FIELD = "_schema"


class InvalidLine(RecordsError):
    """A line of JSON Lines input that cannot be produced; `problems` name fields, not values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def producible_topics() -> list[TopicSpec]:
    """Topics `records produce` writes: those its record types are routed to, each type
    with a Kafka key rule (so not the pipeline's own intermediate topics)."""
    return [
        spec
        for spec in ALL_TOPICS
        if spec.value_schemas
        and all(
            name.rsplit(".", 1)[-1] in KEYED_SCHEMAS and topic_for_schema(name) is spec for name in spec.value_schemas
        )
    ]


def _line_schema(obj: dict[str, Any], topic: TopicSpec) -> str:
    """The full name of the record type a line names (or the topic's only one)."""
    choices = ", ".join(name.rsplit(".", 1)[-1] for name in topic.value_schemas)
    named = obj.pop(SCHEMA_FIELD, None)
    if named is None:
        if len(topic.value_schemas) == 1:
            return topic.value_schemas[0]
        raise InvalidLine([f"field '{SCHEMA_FIELD}': is required on {topic.name} (one of {choices})"])
    for full_name in topic.value_schemas:
        if named in (full_name, full_name.rsplit(".", 1)[-1]):
            return full_name
    raise InvalidLine([f"field '{SCHEMA_FIELD}': not a record type of {topic.name} (one of {choices})"])


def encode_json_line(line: str | bytes, topic: TopicSpec, encoder: EventEncoder) -> EncodedEvent:
    """One JSON Lines object as a message for `topic`, or InvalidLine listing every problem
    as '<Schema>: field 'x': problem'."""
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        raise InvalidLine(["not UTF-8 text"]) from None
    except json.JSONDecodeError as exc:
        raise InvalidLine([f"not valid JSON: {exc.msg} (column {exc.colno})"]) from None
    if not isinstance(obj, dict):
        raise InvalidLine(["expected a JSON object with the record's fields"])
    full_name = _line_schema(obj, topic)
    short = full_name.rsplit(".", 1)[-1]
    schema = encoder.schema(full_name)
    try:
        record = from_json(schema, obj)
    except RecordValidationError as exc:
        raise InvalidLine([f"{short}: {error}" for error in exc.errors]) from None
    try:
        return encoder.encode(schema, record)
    except EventKeyError as exc:
        raise InvalidLine([str(exc)]) from None
    except SerdeError as exc:
        raise InvalidLine([f"{short}: {exc}"]) from None


@dataclass
class ProduceStats:
    """What a producer queued and what Kafka confirmed. Error keys are 'topic: CODE'."""

    sent: Counter[str] = field(default_factory=Counter)  # topic -> messages queued
    bytes: int = 0  # value bytes queued
    delivered: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unconfirmed: int = 0  # still queued when flush timed out

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unconfirmed == 0 and self.delivered == self.total_sent

    def describe_failures(self) -> str:
        parts = [f"{k} x{v}" for k, v in self.errors.most_common()]
        if self.unconfirmed:
            parts.append(f"{self.unconfirmed} not confirmed before the flush timed out")
        return ", ".join(parts)


class EventProducer(ClosedOnExit):
    """Send input records to their topics with their keys; use as a context manager.

        with EventProducer(settings.kafka, serde=serde, keyer=keyer) as producer:
            producer.send("ChatConversation", record)
            stats = producer.flush()

    `serde` decides the wire format (records/wiring.py builds it from the settings: the
    Confluent format when SCHEMA_REGISTRY_URL is set, Avro single-object encoding
    otherwise). Leaving the block flushes what is queued.
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        serde: Serde,
        keyer: SubjectKeyer | None = None,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.encoder = EventEncoder(serde=serde, keyer=keyer)
        self._kafka = producer or KafkaProducer(kafka)
        self._sent: Counter[str] = Counter()
        self._bytes = 0
        self._unconfirmed = 0

    def send(self, schema: str | AvroSchema, record: Mapping[str, Any], *, headers: Headers | None = None) -> int:
        """Encode and queue one record; returns the encoded size. Invalid records raise
        (EventKeyError, SerdeError) before anything is queued."""
        event = self.encoder.encode(schema, record)
        return self.send_encoded(event, headers=headers)

    def send_encoded(self, event: EncodedEvent, *, headers: Headers | None = None) -> int:
        return self.send_raw(event.topic, event.value, key=event.key, headers=headers)

    def send_raw(self, topic: str, value: bytes, *, key: MessageKey = None, headers: Headers | None = None) -> int:
        """Queue bytes as they are (e.g. deliberately malformed input for the DLQ path)."""
        self._kafka.produce(topic, value, key=key, headers=headers)
        self._sent[topic] += 1
        self._bytes += len(value)
        return len(value)

    def poll(self) -> None:
        """Serve delivery reports without waiting."""
        self._kafka.poll(0)

    def flush(self, timeout: float = 60.0) -> ProduceStats:
        """Wait for every delivery report; what is still unconfirmed after `timeout` counts
        as such in the stats (it is not silently dropped)."""
        with contextlib.suppress(KafkaClientError):  # a timeout: the rest counts as unconfirmed
            self._kafka.flush(timeout)
        return self.stats

    @property
    def stats(self) -> ProduceStats:
        reports = self._kafka.stats
        total = sum(self._sent.values())
        unconfirmed = max(0, total - reports.delivered - reports.failed)
        return ProduceStats(
            sent=Counter(self._sent),
            bytes=self._bytes,
            delivered=reports.delivered,
            failed=reports.failed,
            errors=Counter(reports.errors),
            unconfirmed=unconfirmed,
        )

    def close(self) -> None:
        """Flush what is queued (the end of a `with` block); the stats stay readable."""
        self.flush()

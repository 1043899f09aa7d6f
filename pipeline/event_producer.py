"""The producer library for upstream systems: give it records, it picks the topic and the
Kafka key the architecture names, encodes them as Avro and counts deliveries.

Keys: chats by conversation id, calls and recordings by call id, consent changes by the
subject key of the person (so one subject's changes stay in order), data-subject
requests and receipts by request id.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pipeline.config import Settings
from pipeline.exceptions import ConfigError
from pipeline.kafka.producer import DeliveryStats, KafkaProducer
from pipeline.schemas import AvroSchema, default_catalog
from pipeline.serde import AvroSerializer, WireFormat, registry_client
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from pipeline.topics import topic_for_schema

_NS = "cs.records."
_FIELD_KEYS = {
    _NS + "ChatConversation": "conversation_id",
    _NS + "CallDetailRecord": "call_id",
    _NS + "CallRecording": "call_id",
    _NS + "DataSubjectRequest": "request_id",
    _NS + "DsrReceipt": "request_id",
}
_CONSENT_ID_ORDER = (
    ("email", IdentifierKind.EMAIL),
    ("phone", IdentifierKind.PHONE),
    ("person_number", IdentifierKind.PERSON_NUMBER),
    ("app_username", IdentifierKind.APP_USERNAME),
    ("visitor_id", IdentifierKind.VISITOR_ID),
)


def key_for(schema_name: str, record: Mapping[str, Any], keyer: SubjectKeyer | None) -> bytes:
    """The Kafka key of a record of this schema (see the module docstring)."""
    field = _FIELD_KEYS.get(schema_name)
    if field is not None:
        return str(record[field]).encode()
    if schema_name in (_NS + "ConsentChanged", _NS + "CookieConsentChanged"):
        if keyer is None:
            raise ConfigError("consent events are keyed by subject key: the producer needs the pepper")
        subject = record["subject"] if schema_name == _NS + "ConsentChanged" else record
        for name, kind in _CONSENT_ID_ORDER:
            key = keyer.key(kind, subject.get(name))
            if key is not None:
                return key.encode()
        raise ConfigError(f"{schema_name}: no usable identifier to key the event by")
    raise ConfigError(f"{schema_name} is not produced by upstream systems")


class EventProducer:
    """Encodes and produces upstream events; use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        keyer: SubjectKeyer | None = None,
        wire_format: WireFormat | None = None,
    ) -> None:
        self._keyer = keyer
        if wire_format is None:
            wire_format = WireFormat.CONFLUENT if settings.schema_registry_url else WireFormat.SINGLE_OBJECT
        self._wire_format = wire_format
        self._registry = registry_client(settings.schema_registry_url) if settings.schema_registry_url else None
        self._serializers: dict[str, AvroSerializer] = {}
        self._producer = KafkaProducer(settings.kafka)
        self.bytes_sent = 0

    def serializer(self, schema: AvroSchema | str) -> AvroSerializer:
        name = schema if isinstance(schema, str) else schema.full_name
        if name not in self._serializers:
            resolved = default_catalog().get(name) if isinstance(schema, str) else schema
            self._serializers[name] = AvroSerializer(resolved, wire_format=self._wire_format, registry=self._registry)
            self._serializers[resolved.full_name] = self._serializers[name]
        return self._serializers[name]

    def send(self, schema: AvroSchema | str, record: Mapping[str, Any]) -> None:
        serializer = self.serializer(schema)
        full_name = serializer.schema.full_name
        payload = serializer(record)
        self.bytes_sent += len(payload)
        self._producer.produce(topic_for_schema(full_name).name, payload, key=key_for(full_name, record, self._keyer))

    def send_raw(self, topic: str, key: bytes | None, payload: bytes) -> None:
        """Bytes as they are (used by the simulator for deliberately malformed input)."""
        self.bytes_sent += len(payload)
        self._producer.produce(topic, payload, key=key)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> DeliveryStats:
        return self._producer.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._producer.close()

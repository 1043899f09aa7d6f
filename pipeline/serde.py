"""Avro on the wire.

Two framings, both decoded automatically:
- Avro single-object encoding (default): 0xC3 0x01, the writer schema's 8-byte
  CRC-64-AVRO fingerprint (little-endian), then the binary body. The writer schema is
  found by fingerprint among the repository's schemas, so no registry server is needed.
- Confluent wire format: 0x00, a 4-byte big-endian schema id, then the body; the writer
  schema comes from a schema registry (confluent-kafka's client, `mock://` in tests).

Serializers and deserializers are `__call__(value, ctx=None)` objects that parse their
schemas once. Errors name the schema and the field, never the value.
"""

from __future__ import annotations

import enum
import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import fastavro

from pipeline.avro_json import check_record
from pipeline.exceptions import RecordsError
from pipeline.schemas import AvroSchema, SchemaCatalog, SchemaError, default_catalog

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = 5


class SerdeError(RecordsError):
    """A value could not be encoded or decoded; says which schema and field."""


class WireFormat(enum.StrEnum):
    SINGLE_OBJECT = "single-object"
    CONFLUENT = "confluent"


class RegistryClient(Protocol):
    """The part of confluent_kafka.schema_registry.SchemaRegistryClient used here."""

    def register_schema(self, subject_name: str, schema: Any, normalize_schemas: bool = ...) -> int: ...

    def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Any: ...


def registry_client(url: str) -> RegistryClient:
    """A schema registry client for the Confluent wire format (`mock://name` for tests)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"url": url})


@dataclass(frozen=True)
class Decoded:
    schema: AvroSchema
    value: dict[str, Any]
    wire_format: WireFormat

    @property
    def schema_name(self) -> str:
        return self.schema.full_name


class AvroSerializer:
    """Encodes records of one schema in the chosen wire format."""

    def __init__(
        self,
        schema: AvroSchema | str,
        *,
        catalog: SchemaCatalog | None = None,
        wire_format: WireFormat = WireFormat.SINGLE_OBJECT,
        registry: RegistryClient | None = None,
    ) -> None:
        catalog = catalog or default_catalog()
        self.schema = catalog.get(schema) if isinstance(schema, str) else schema
        self.wire_format = wire_format
        if wire_format is WireFormat.CONFLUENT:
            if registry is None:
                raise SerdeError("the Confluent wire format needs a schema registry URL")
            from confluent_kafka.schema_registry import Schema

            # Record-name strategy: several record types share a topic. The full definition
            # is registered (the canonical form would drop logical types).
            definition = json.dumps(self.schema.definition)
            schema_id = registry.register_schema(self.schema.full_name, Schema(definition, "AVRO"))
            self._header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)
        else:
            self._header = SINGLE_OBJECT_MAGIC + self.schema.fingerprint

    def __call__(self, value: Mapping[str, Any], ctx: object = None) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self.schema.parsed, value)
        except Exception as exc:
            # fastavro's messages quote the offending value; ours name the field instead.
            errors = check_record(self.schema, value)
            detail = "; ".join(str(e) for e in errors) or f"{type(exc).__name__} while encoding"
            raise SerdeError(f"cannot encode {self.schema.full_name}: {detail}") from None
        return out.getvalue()


class AvroDeserializer:
    """Decodes either framing; the reader schema is the repository's current version.

    Contract: every message that cannot be decoded (unknown framing, a schema id missing
    from the registry, a registered schema the catalog does not know, a bad body) raises
    SerdeError naming the schema, never a value, so callers dead-letter it."""

    def __init__(self, *, catalog: SchemaCatalog | None = None, registry: RegistryClient | None = None) -> None:
        self.catalog = catalog or default_catalog()
        self.registry = registry
        self._confluent_cache: dict[int, tuple[AvroSchema, AvroSchema]] = {}

    def __call__(self, data: bytes | None, ctx: object = None) -> Decoded:
        if not data:
            raise SerdeError("empty message: no Avro payload")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._single_object(data)
        if data[:1] == CONFLUENT_MAGIC and len(data) >= _CONFLUENT_HEADER:
            return self._confluent(data)
        raise SerdeError(f"not Avro: unknown framing (first byte 0x{data[0]:02x})")

    def writer_schema(self, data: bytes) -> AvroSchema:
        """The writer schema of a single-object-encoded message, without decoding it."""
        if data[:2] != SINGLE_OBJECT_MAGIC or len(data) < _SINGLE_HEADER:
            raise SerdeError("not an Avro single-object message")
        writer = self.catalog.by_fingerprint(data[2:_SINGLE_HEADER])
        if writer is None:
            raise SerdeError(f"unknown writer schema fingerprint {data[2:_SINGLE_HEADER].hex()}")
        return writer

    def _single_object(self, data: bytes) -> Decoded:
        writer = self.writer_schema(data)
        reader = self.catalog.get(writer.full_name)
        value = self._read(data[_SINGLE_HEADER:], writer, reader)
        return Decoded(reader, value, WireFormat.SINGLE_OBJECT)

    def _confluent(self, data: bytes) -> Decoded:
        (schema_id,) = struct.unpack(">I", data[1:_CONFLUENT_HEADER])
        if schema_id not in self._confluent_cache:
            if self.registry is None:
                raise SerdeError(f"Confluent-framed message (schema id {schema_id}) but no schema registry is set")
            try:
                registered = self.registry.get_schema(schema_id)
            except Exception as exc:
                raise SerdeError(f"schema id {schema_id} not found in the registry: {exc}") from exc
            try:
                writer = AvroSchema.from_definition(json.loads(registered.schema_str))
                reader = self.catalog.get(writer.full_name)
            except SchemaError as exc:  # registered, but not a schema this pipeline knows
                raise SerdeError(f"schema id {schema_id}: {exc}") from None
            except (ValueError, TypeError, AttributeError):
                raise SerdeError(f"schema id {schema_id}: the registry's schema is not Avro JSON") from None
            self._confluent_cache[schema_id] = (writer, reader)
        writer, reader = self._confluent_cache[schema_id]
        value = self._read(data[_CONFLUENT_HEADER:], writer, reader)
        return Decoded(reader, value, WireFormat.CONFLUENT)

    @staticmethod
    def _read(body: bytes, writer: AvroSchema, reader: AvroSchema) -> dict[str, Any]:
        buf = io.BytesIO(body)
        try:
            value = fastavro.schemaless_reader(
                buf, writer.parsed, None if reader is writer else reader.parsed
            )
        except EOFError:
            raise SerdeError(f"truncated {writer.full_name} message") from None
        except Exception as exc:
            raise SerdeError(f"cannot decode {writer.full_name}: {type(exc).__name__}") from None
        if buf.tell() != len(body):
            raise SerdeError(f"{writer.full_name}: {len(body) - buf.tell()} trailing bytes after the record")
        return value  # type: ignore[return-value]


class Serde:
    """How one process reads and writes Avro. Built once from the settings by the wiring
    module (`records/wiring.py`) and handed to every stage, so that a schema registry
    reaches every decoder or none.

    - `decode`: accepts both framings; Confluent-framed messages need `registry`.
    - `encoder(schema)`: single-object encoding, what the pipeline's own topics carry
      (the sink's Avro-container insert path cuts that 10-byte prefix off).
    - `input_encoder(schema)`: what upstream producers write: the Confluent format with a
      registry, single-object encoding without one.
    """

    def __init__(self, *, catalog: SchemaCatalog | None = None, registry: RegistryClient | None = None) -> None:
        self.catalog = catalog or default_catalog()
        self.registry = registry
        self.decode = AvroDeserializer(catalog=self.catalog, registry=registry)
        self._encoders: dict[tuple[str, WireFormat], AvroSerializer] = {}

    @property
    def input_wire_format(self) -> WireFormat:
        return WireFormat.CONFLUENT if self.registry is not None else WireFormat.SINGLE_OBJECT

    def encoder(self, schema: AvroSchema | str) -> AvroSerializer:
        return self._encoder(schema, WireFormat.SINGLE_OBJECT)

    def input_encoder(self, schema: AvroSchema | str) -> AvroSerializer:
        return self._encoder(schema, self.input_wire_format)

    def _encoder(self, schema: AvroSchema | str, wire_format: WireFormat) -> AvroSerializer:
        name = schema if isinstance(schema, str) else schema.full_name
        cached = self._encoders.get((name, wire_format))
        if cached is None:
            cached = AvroSerializer(schema, catalog=self.catalog, wire_format=wire_format, registry=self.registry)
            self._encoders[(name, wire_format)] = self._encoders[(cached.schema.full_name, wire_format)] = cached
        return cached

"""Every decode failure of a Confluent-framed message is a SerdeError (issue 11, finding 5),
which both stages dead-letter: the streams worker (streams/app.py) and the sink's batch
(sink/batch.py) catch SerdeError, so a registered schema the catalog does not know
must not surface as SchemaError or a library error."""

from __future__ import annotations

import json
import struct

import pytest
from confluent_kafka.schema_registry import Schema

from pipeline.serde import AvroDeserializer, SerdeError, registry_client


def test_a_registered_schema_unknown_to_the_catalog_is_a_serde_error_naming_the_id() -> None:
    registry = registry_client("mock://serde-registry-errors")
    foreign = {"type": "record", "name": "Foreign", "namespace": "x", "fields": [{"name": "a", "type": "string"}]}
    schema_id = registry.register_schema("foreign-value", Schema(json.dumps(foreign), "AVRO"))
    decode = AvroDeserializer(registry=registry)
    with pytest.raises(SerdeError, match=f"schema id {schema_id}: unknown schema 'x.Foreign'"):
        decode(b"\x00" + struct.pack(">I", schema_id) + b"\x02a")


def test_a_registered_schema_that_is_not_avro_is_a_serde_error() -> None:
    registry = registry_client("mock://serde-registry-errors-json")
    schema_id = registry.register_schema("json-value", Schema('{"type": "object"}', "JSON"))
    with pytest.raises(SerdeError, match=f"schema id {schema_id}"):
        AvroDeserializer(registry=registry)(b"\x00" + struct.pack(">I", schema_id) + b"{}")

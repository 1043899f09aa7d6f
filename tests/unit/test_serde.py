from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.avro_json import RecordValidationError, from_json, to_jsonable
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, RegistryClient, SerdeError, WireFormat, registry_client
from tests.avro_strategies import records

CATALOG = default_catalog()
SCHEMA_NAMES = CATALOG.names


def _normalise(value: Any) -> Any:
    """Decoded uuids come back as UUID objects; compare them as strings."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@pytest.fixture(scope="module")
def registry() -> RegistryClient:
    return registry_client("mock://serde-tests")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("wire", list(WireFormat))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_every_schema_round_trips_in_both_wire_formats(
    name: str, wire: WireFormat, registry: RegistryClient, data: st.DataObject
) -> None:
    schema = CATALOG.get(name)
    record = data.draw(records(schema))
    serializer = AvroSerializer(schema, wire_format=wire, registry=registry)
    payload = serializer(record)
    decoded = AvroDeserializer(registry=registry)(payload)
    assert decoded.schema_name == schema.full_name
    assert decoded.wire_format is wire
    assert _normalise(decoded.value) == _normalise(record)


def test_single_object_header_is_magic_plus_fingerprint() -> None:
    schema = CATALOG.get("CallDetailRecord")
    record = from_json(schema, _call_json())
    payload = AvroSerializer(schema)(record)
    assert payload[:2] == b"\xc3\x01"
    assert payload[2:10] == schema.fingerprint


def _call_json() -> dict[str, Any]:
    return {
        "event_id": "0b5f1f5e-6f0c-4d6b-9a55-1e9d7d6f2c11",
        "event_time": "2026-05-01T10:00:00Z",
        "produced_at": 1777629600000,
        "source_system": "pbx",
        "call_id": "c-1",
        "caller_number": "+358401234567",
        "service_number": "+358201234567",
        "started_at": "2026-05-01T10:00:00Z",
        "ended_at": "2026-05-01T10:03:00+00:00",
    }


def test_from_json_fills_defaults_and_converts_timestamps() -> None:
    record = from_json(CATALOG.get("CallDetailRecord"), _call_json())
    assert record["direction"] == "UNKNOWN"
    assert record["answered_at"] is None
    assert record["ended_at"].isoformat() == "2026-05-01T10:03:00+00:00"
    assert to_jsonable(record)["produced_at"] == "2026-05-01T10:00:00Z"


def test_from_json_names_every_bad_field_without_values() -> None:
    line = _call_json() | {"caller_number": 358401234567, "direction": "SIDEWAYS", "colour": "magenta-42"}
    del line["call_id"]
    line["started_at"] = "yesterday-ish"
    with pytest.raises(RecordValidationError) as err:
        from_json(CATALOG.get("CallDetailRecord"), line)
    paths = {e.path for e in err.value.errors}
    assert paths == {"caller_number", "direction", "colour", "call_id", "started_at"}
    message = str(err.value)
    assert "358401234567" not in message and "magenta-42" not in message and "yesterday" not in message


def test_nested_field_paths_are_reported() -> None:
    schema = CATALOG.get("ChatConversation")
    base = {
        "event_id": str(uuid.uuid4()),
        "event_time": 0,
        "produced_at": 0,
        "source_system": "web-chat",
        "conversation_id": "k1",
        "started_at": 0,
        "messages": [{"message_id": "m1", "sent_at": 0, "text": 42}],
    }
    with pytest.raises(RecordValidationError) as err:
        from_json(schema, base)
    assert [e.path for e in err.value.errors] == ["messages[0].text"]


def test_encode_error_names_the_field_and_hides_the_value() -> None:
    schema = CATALOG.get("CallDetailRecord")
    record = from_json(schema, _call_json())
    record["caller_number"] = 401234567
    with pytest.raises(SerdeError) as err:
        AvroSerializer(schema)(record)
    assert "caller_number" in str(err.value)
    assert "401234567" not in str(err.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"{\"json\": true}", "unknown framing"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown writer schema fingerprint"),
        (b"\x00\x00\x00\x00\x07\x02", "no schema registry"),
    ],
)
def test_undecodable_input_raises_a_clear_error(payload: bytes, reason: str) -> None:
    with pytest.raises(SerdeError, match=reason):
        AvroDeserializer()(payload)


def test_truncated_and_padded_bodies_are_rejected() -> None:
    schema = CATALOG.get("CallDetailRecord")
    payload = AvroSerializer(schema)(from_json(schema, _call_json()))
    with pytest.raises(SerdeError, match=r"truncated|cannot decode"):
        AvroDeserializer()(payload[:-5])
    with pytest.raises(SerdeError, match="trailing bytes"):
        AvroDeserializer()(payload + b"\x00")

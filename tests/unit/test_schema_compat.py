from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.schema_compat import full_incompatibilities, incompatibilities
from pipeline.schemas import SCHEMA_DIR, AvroSchema, SchemaCatalog, released_versions

CURRENT = SchemaCatalog.from_directory(SCHEMA_DIR)
RELEASED = released_versions()
ENVELOPE = {"event_id", "event_time", "produced_at", "source_system", "schema_version"}
STORED_ROW = {"event_id", "source_event_id", "subject_keys", "stripped", "ingested_at", "expires_at"}


@pytest.mark.parametrize("schema", list(CURRENT), ids=lambda s: s.name)
def test_schema_is_fully_compatible_with_its_newest_release(schema: AvroSchema) -> None:
    assert schema.name in RELEASED, f"{schema.name} has no released version in schemas/avro/released/"
    version, released = RELEASED[schema.name][-1]
    problems = full_incompatibilities(schema, released)
    assert not problems, f"{schema.name} breaks compatibility with v{version}:\n" + "\n".join(problems)


@pytest.mark.parametrize("schema", list(CURRENT), ids=lambda s: s.name)
def test_every_field_is_documented(schema: AvroSchema) -> None:
    undocumented: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, path)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                for f in node["fields"]:
                    if not f.get("doc"):
                        undocumented.append(f"{path}{f['name']}")
                    walk(f["type"], f"{path}{f['name']}.")
            elif node.get("type") == "array":
                walk(node["items"], path)

    walk(schema.definition, "")
    assert schema.definition.get("doc")
    assert undocumented == []


@pytest.mark.parametrize("schema", list(CURRENT), ids=lambda s: s.name)
def test_events_carry_the_common_envelope(schema: AvroSchema) -> None:
    fields = set(schema.field_names)
    if schema.name in ("DataSubjectRequest", "DsrReceipt"):
        assert {"request_id", "schema_version"} <= fields
    elif schema.name == "SubjectRecord":
        assert {"subject_key", "updated_at", "schema_version"} <= fields
    elif schema.name.endswith("Record") and schema.name != "CallDetailRecord":
        # Stored rows: deduplicated by event_id, findable by subject key, expiring by policy.
        assert fields >= STORED_ROW
    else:
        assert fields >= ENVELOPE


def _variant(name: str, change: Any) -> AvroSchema:
    definition = copy.deepcopy(CURRENT.get(name).definition)
    change(definition)
    return AvroSchema.from_definition(definition)


def _field(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["name"] == name)


def test_adding_a_required_field_breaks_backward_compatibility() -> None:
    new = _variant("CallDetailRecord", lambda d: d["fields"].append({"name": "queue", "type": "string"}))
    problems = full_incompatibilities(new, CURRENT.get("CallDetailRecord"))
    assert problems == [
        "new cannot read old: field 'queue': required by the reader, absent in the writer, and no default"
    ]


def test_adding_an_optional_field_is_compatible() -> None:
    new = _variant(
        "CallDetailRecord",
        lambda d: d["fields"].append({"name": "queue", "type": ["null", "string"], "default": None}),
    )
    assert full_incompatibilities(new, CURRENT.get("CallDetailRecord")) == []


def test_changing_a_type_is_reported_with_the_field() -> None:
    new = _variant("CallDetailRecord", lambda d: _field(d, "caller_number").update(type="long"))
    problems = full_incompatibilities(new, CURRENT.get("CallDetailRecord"))
    assert any("field 'caller_number': written as string, read as long" in p for p in problems)


def test_promotion_is_one_way() -> None:
    old = _variant("ChatConversation", lambda d: None)
    new = _variant("ChatConversation", lambda d: _field(d, "visit_count").update(type=["null", "long"]))
    assert incompatibilities(new, old) == []
    assert incompatibilities(old, new) == ["field 'visit_count': written as long, read as int"]


def test_removing_an_enum_symbol_without_default_breaks_forward_reading() -> None:
    def drop_symbol(d: dict[str, Any]) -> None:
        _field(d, "status")["type"]["symbols"].remove("WITHDRAWN")

    new = _variant("ConsentChanged", drop_symbol)
    problems = full_incompatibilities(new, CURRENT.get("ConsentChanged"))
    assert problems == [
        "new cannot read old: field 'status': enum ConsentStatus lacks symbol(s) WITHDRAWN and has no default"
    ]


def test_nested_record_changes_name_the_path() -> None:
    def retype_text(d: dict[str, Any]) -> None:
        _field(d, "messages")["type"]["items"]["fields"][-1]["type"] = "bytes"

    new = _variant("ChatConversation", retype_text)
    # string <-> bytes promote both ways in Avro: still compatible.
    assert full_incompatibilities(new, CURRENT.get("ChatConversation")) == []

    def retype_sent_at(d: dict[str, Any]) -> None:
        _field(d, "messages")["type"]["items"]["fields"][1]["type"] = "string"

    broken = _variant("ChatConversation", retype_sent_at)
    problems = full_incompatibilities(broken, CURRENT.get("ChatConversation"))
    assert any("field 'messages[].sent_at'" in p for p in problems)

"""Values of the stored record types (the *Record schemas the sink writes), as the streams
stage would produce them: valid for the schema, every optional field set, ids derived from
a number so a test knows which row is which."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.schemas import AvroSchema

# Rows must be younger than their retention, or ClickHouse's TTL drops them on insert.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def record(schema: AvroSchema, n: int, **overrides: Any) -> dict[str, Any]:
    """A valid value of `schema` with every optional field set; ids derive from `n`."""
    named: dict[str, Any] = {}

    def value(name: str, node: Any) -> Any:
        if isinstance(node, list):
            return value(name, next(b for b in node if b != "null"))
        if isinstance(node, str):
            if node in named:
                return value(name, named[node])
            return {
                "string": f"{name}-{n}",
                "int": n % 1000,
                "long": n,
                "double": 60.0 + n / 1000,
                "float": 1.5,
                "boolean": True,
                "bytes": b"x",
            }[node]
        kind = node["type"]
        if node.get("logicalType") == "timestamp-millis":
            return NOW
        if node.get("logicalType") == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}-{n}"))
        if kind == "enum":
            named[node["name"]] = node
            return node["symbols"][0]
        if kind == "array":
            return [f"{name}-{n}"] if name == "subject_keys" else []
        if kind == "map":
            return {"calls": value(name, node["values"])}
        return value(name, kind)

    out = {f["name"]: value(f["name"], f["type"]) for f in schema.definition["fields"]}
    if "channel" in out:
        out["channel"] = "WEB"
    out.update(overrides)
    return out


# The records.* tables whose rows carry subject keys, in the storage model's order (written
# out, not read from the model, so a table that goes missing fails the tests that use it).
SUBJECT_TABLES = ("chat_conversations", "chat_messages", "calls", "call_recordings", "consent_ledger", "contact_forms")

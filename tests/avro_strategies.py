"""Hypothesis strategies that build valid records for any Avro schema of the catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from pipeline.schemas import AvroSchema

_TIMESTAMPS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=(d.microsecond // 1000) * 1000))
_TEXT = st.text(max_size=20)


def records(schema: AvroSchema) -> st.SearchStrategy[dict[str, Any]]:
    named: dict[str, Any] = {}

    def node(n: Any) -> st.SearchStrategy[Any]:
        if isinstance(n, list):
            return st.one_of([node(b) for b in n])
        if isinstance(n, str):
            if n in named:
                return node(named[n])
            return {
                "null": st.none(),
                "boolean": st.booleans(),
                "int": st.integers(-(2**31), 2**31 - 1),
                "long": st.integers(-(2**63), 2**63 - 1),
                "float": st.floats(width=32, allow_nan=False),
                "double": st.floats(allow_nan=False),
                "bytes": st.binary(max_size=16),
                "string": _TEXT,
            }[n]
        kind = n["type"]
        if isinstance(kind, (dict, list)):
            return node(kind)
        if n.get("logicalType") == "timestamp-millis":
            return _TIMESTAMPS
        if n.get("logicalType") == "uuid":
            return st.uuids().map(str)
        if kind == "record":
            named[n["name"]] = n
            return st.fixed_dictionaries({f["name"]: node(f["type"]) for f in n["fields"]})
        if kind == "enum":
            named[n["name"]] = n
            return st.sampled_from(n["symbols"])
        if kind == "array":
            return st.lists(node(n["items"]), max_size=3)
        if kind == "map":
            return st.dictionaries(_TEXT, node(n["values"]), max_size=3)
        return node(kind)

    return node(schema.definition)

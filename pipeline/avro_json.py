"""Checking records against an Avro schema, with errors that name the field but never
show its value (values are personal data).

`from_json` turns a JSON object (e.g. a line of `records produce`) into the Python
values fastavro writes: ISO-8601 strings or epoch milliseconds become datetimes, base64
becomes bytes, defaults fill missing fields. `check_record` finds what is wrong with an
already-typed record, to explain an encoding failure. `to_jsonable` is the way back.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipeline.exceptions import RecordsError
from pipeline.schemas import AvroSchema

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class FieldError:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"field '{self.path}': {self.problem}"


class RecordValidationError(RecordsError):
    """A record does not fit its schema; lists every field that is wrong."""

    def __init__(self, schema_name: str, errors: list[FieldError]) -> None:
        self.schema_name = schema_name
        self.errors = errors
        super().__init__(f"{schema_name}: " + "; ".join(str(e) for e in errors))


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Walker:
    """Walks a schema and a value together; `json_mode` converts JSON representations."""

    def __init__(self, schema: AvroSchema, json_mode: bool) -> None:
        self.named: dict[str, Any] = {}
        self.json_mode = json_mode
        self._collect(schema.definition, schema.definition.get("namespace", ""))
        self.errors: list[FieldError] = []

    def _collect(self, node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "enum", "fixed"):
                ns = node.get("namespace", namespace)
                name = node["name"] if "." in node["name"] else f"{ns}.{node['name']}".lstrip(".")
                self.named[name] = node
                self.named.setdefault(node["name"], node)
                if kind == "record":
                    for f in node["fields"]:
                        self._collect(f["type"], ns)
            elif kind == "array":
                self._collect(node["items"], namespace)
            elif kind == "map":
                self._collect(node["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._collect(kind, namespace)

    def fail(self, path: str, problem: str) -> None:
        self.errors.append(FieldError(path or "(record)", problem))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVES:
            return self.named.get(node, node)
        if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"] in self.named:
            return self.named[node["type"]]
        return node

    def type_label(self, node: Any) -> str:
        node = self.resolve(node)
        if isinstance(node, list):
            return " or ".join(self.type_label(b) for b in node)
        if isinstance(node, dict):
            return str(node.get("logicalType") or node.get("name") or node.get("type"))
        return str(node)

    # Each visit returns the converted value; on error it records it and returns the input.
    def visit(self, node: Any, value: Any, path: str) -> Any:
        node = self.resolve(node)
        if isinstance(node, list):
            return self._union(node, value, path)
        if isinstance(node, dict):
            kind = node["type"]
            if isinstance(kind, (dict, list)):
                return self.visit(kind, value, path)
            logical = node.get("logicalType")
            if kind == "record":
                return self._record(node, value, path)
            if kind == "enum":
                return self._enum(node, value, path)
            if kind == "array":
                return self._array(node, value, path)
            if kind == "map":
                return self._map(node, value, path)
            if kind == "fixed":
                return self._bytes(value, path, size=node["size"])
            if logical in ("timestamp-millis", "timestamp-micros"):
                return self._timestamp(value, path)
            if logical == "uuid":
                return self._uuid(value, path)
            return self.visit(kind, value, path)
        return self._primitive(node, value, path)

    def _record(self, node: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object ({node['name']}), got {_describe(value)}")
            return value
        out: dict[str, Any] = {}
        known = {f["name"] for f in node["fields"]}
        for unknown in sorted(set(value) - known):
            self.fail(f"{path}.{unknown}" if path else str(unknown), f"not a field of {node['name']}")
        for f in node["fields"]:
            name = f["name"]
            sub = f"{path}.{name}" if path else name
            if name in value:
                out[name] = self.visit(f["type"], value[name], sub)
            elif "default" in f:
                out[name] = self.visit(f["type"], _copy_default(f["default"]), sub)
            else:
                self.fail(sub, f"is required ({self.type_label(f['type'])})")
        return out

    def _union(self, branches: list[Any], value: Any, path: str) -> Any:
        if value is None:
            if "null" in branches:
                return None
            self.fail(path, f"must not be null (expected {self.type_label(branches)})")
            return value
        for branch in branches:
            if branch == "null":
                continue
            probe = _Walker.__new__(_Walker)
            probe.named, probe.json_mode, probe.errors = self.named, self.json_mode, []
            converted = probe.visit(branch, value, path)
            if not probe.errors:
                return converted
            if len(branches) <= 2:  # an optional field: the non-null branch's error says most
                self.errors.extend(probe.errors)
                return value
        self.fail(path, f"expected {self.type_label(branches)}, got {_describe(value)}")
        return value

    def _enum(self, node: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, str) or value not in node["symbols"]:
            shown = "one of " + ", ".join(node["symbols"])
            self.fail(path, f"expected {shown}" + ("" if isinstance(value, str) else f", got {_describe(value)}"))
        return value

    def _array(self, node: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, (list, tuple)):
            self.fail(path, f"expected an array, got {_describe(value)}")
            return value
        return [self.visit(node["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]

    def _map(self, node: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.fail(path, f"expected an object with string keys, got {_describe(value)}")
            return value
        return {k: self.visit(node["values"], v, f"{path}.{k}") for k, v in value.items()}

    def _timestamp(self, value: Any, path: str) -> Any:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int) and not isinstance(value, bool):
            if self.json_mode:
                return datetime.fromtimestamp(value / 1000, tz=UTC)
            return value
        if self.json_mode and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                self.fail(path, "expected an ISO-8601 timestamp or epoch milliseconds")
                return value
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        self.fail(path, f"expected a timestamp, got {_describe(value)}")
        return value

    def _uuid(self, value: Any, path: str) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
        self.fail(path, "expected a UUID")
        return value

    def _bytes(self, value: Any, path: str, size: int | None = None) -> Any:
        if isinstance(value, (bytes, bytearray)):
            out = bytes(value)
        elif self.json_mode and isinstance(value, str):
            try:
                out = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                self.fail(path, "expected base64-encoded bytes")
                return value
        else:
            self.fail(path, f"expected bytes, got {_describe(value)}")
            return value
        if size is not None and len(out) != size:
            self.fail(path, f"expected exactly {size} bytes, got {len(out)}")
        return out

    def _primitive(self, kind: str, value: Any, path: str) -> Any:
        ok: bool
        if kind == "null":
            ok = value is None
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind in ("int", "long"):
            lo, hi = _INT_RANGE if kind == "int" else _LONG_RANGE
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        elif kind in ("float", "double"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
        elif kind == "string":
            ok = isinstance(value, str)
        elif kind == "bytes":
            return self._bytes(value, path)
        else:
            self.fail(path, f"unknown type {kind}")
            return value
        if not ok:
            self.fail(path, f"expected {kind}, got {_describe(value)}")
        return value


def _copy_default(default: Any) -> Any:
    if isinstance(default, dict):
        return {k: _copy_default(v) for k, v in default.items()}
    if isinstance(default, list):
        return [_copy_default(v) for v in default]
    return default


def from_json(schema: AvroSchema, obj: Any) -> dict[str, Any]:
    """A JSON object as the record fastavro writes, or RecordValidationError."""
    walker = _Walker(schema, json_mode=True)
    record = walker.visit(schema.definition, obj, "")
    if walker.errors:
        raise RecordValidationError(schema.full_name, walker.errors)
    return record


def check_record(schema: AvroSchema, record: Any) -> list[FieldError]:
    """What is wrong with a typed record (empty if it fits the schema)."""
    walker = _Walker(schema, json_mode=False)
    walker.visit(schema.definition, record, "")
    return walker.errors


def to_jsonable(value: Any, *, bytes_as_text: bool = False) -> Any:
    """Decoded Avro or ClickHouse values as JSON-friendly values: ISO timestamps in UTC (a
    naive one is UTC, as ClickHouse's DateTime64(3, 'UTC') columns return them), bytes in
    base64, or as UTF-8 text with `bytes_as_text` (ClickHouse String columns)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, bytes_as_text=bytes_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, bytes_as_text=bytes_as_text) for v in value]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        if bytes_as_text:
            return bytes(value).decode("utf-8", "replace")
        return base64.b64encode(bytes(value)).decode("ascii")
    return value

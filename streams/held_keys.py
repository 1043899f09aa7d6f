"""The subject keys a SubjectRecord message holds (`subject_key` and `linked_keys`), read
without decoding the rest of the record: what the subject index's tail needs of every
message of cs.subjects.v1, most of them written by the stage itself a moment before.

Contract: for a single-object-encoded message whose writer schema starts with the fields
`subject_key` (string) and `linked_keys` (array of strings), as every released
SubjectRecord schema does, the two fields are read straight from the Avro body (a string
is a zig-zag varint length and UTF-8 bytes; an array is blocks of a zig-zag varint count,
a negative count followed by the block's byte size, ending with a 0 count). Any other
message (Confluent framing, another schema) is decoded in full with the given
deserializer. A body too short for the two fields raises SerdeError, like a full decode;
the fields after them are not read, so a record whose later fields are damaged is
indexed under its keys (reading it in full, as a lookup does, still fails).
"""

from __future__ import annotations

from typing import Any

from pipeline.avro_binary import read_bytes, read_string_array
from pipeline.serde import SINGLE_OBJECT_MAGIC, AvroDeserializer, SerdeError

_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_PREFIX = (("subject_key", "string"), ("linked_keys", {"type": "array", "items": "string"}))


class HeldKeysReader:
    """Callable: SubjectRecord message value -> the subject keys it holds, as bytes."""

    def __init__(self, decode: AvroDeserializer) -> None:
        self._decode = decode
        self._prefixed: dict[bytes, bool] = {}  # writer fingerprint -> starts with the two fields

    def __call__(self, value: bytes) -> list[bytes]:
        if value[:2] == SINGLE_OBJECT_MAGIC and len(value) >= _HEADER and self._starts_with_keys(value):
            return read_prefix(value, _HEADER)
        record = self._decode(value).value
        return [k.encode() for k in (record["subject_key"], *record["linked_keys"])]

    def _starts_with_keys(self, value: bytes) -> bool:
        fingerprint = value[2:_HEADER]
        known = self._prefixed.get(fingerprint)
        if known is None:
            try:
                writer = self._decode.writer_schema(value)
            except SerdeError:
                return False  # the full decode raises the error
            fields = writer.parsed.get("fields", [])
            known = len(fields) >= 2 and all(
                field["name"] == name and _plain(field["type"]) == kind
                for field, (name, kind) in zip(fields, _PREFIX, strict=False)
            )
            self._prefixed[fingerprint] = known
        return known


def _plain(kind: Any) -> Any:
    """A field type without what parsing adds (logical types, docs) for the comparison."""
    if isinstance(kind, dict):
        return {k: v for k, v in kind.items() if k in ("type", "items")}
    return kind


def read_prefix(data: bytes, at: int) -> list[bytes]:
    """`subject_key` then the items of `linked_keys`, read from the Avro body at `data[at:]`."""
    try:
        key, at = read_bytes(data, at)
        linked, _ = read_string_array(data, at)
    except ValueError:
        raise SerdeError("SubjectRecord: body ends inside subject_key/linked_keys") from None
    return [key, *linked]

"""Avro object container files built from single-object-encoded message bodies, so
ClickHouse decodes a whole batch itself (`INSERT ... FORMAT Avro`), in C++, columnar.

A single-object message is 0xC3 0x01, the writer schema's 8-byte fingerprint, then the
binary body. A container (Avro spec, "Object Container Files") is a header (magic
`Obj\\x01`, a metadata map with `avro.schema` and `avro.codec`, a 16-byte sync marker)
followed by blocks: record count and byte size as zig-zag varints, the bodies
concatenated, the sync marker again. All bodies of one container must share the writer
schema named in the header; ClickHouse resolves writer fields to table columns by name.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from pipeline.schemas import AvroSchema

MAGIC = b"Obj\x01"
SINGLE_OBJECT_PREFIX = 10  # 0xC3 0x01 + 8-byte fingerprint


def zigzag_varint(n: int) -> bytes:
    """Avro's `long` encoding: zig-zag, then little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _metadata(schema: AvroSchema) -> bytes:
    entries = {"avro.schema": json.dumps(schema.definition).encode(), "avro.codec": b"null"}
    out = bytearray(zigzag_varint(len(entries)))
    for key, value in entries.items():
        raw_key = key.encode()
        out += zigzag_varint(len(raw_key)) + raw_key + zigzag_varint(len(value)) + value
    out += zigzag_varint(0)
    return bytes(out)


def container(schema: AvroSchema, bodies: Sequence[bytes]) -> bytes:
    """One container with one block holding `bodies` (binary records without any prefix)."""
    return b"".join(container_parts(schema, bodies))


def container_parts(schema: AvroSchema, bodies: Sequence[bytes]) -> list[bytes]:
    """The same container as pieces to write one after the other: the header, then the
    bodies themselves, not copied (a batch's bodies are tens of MB)."""
    sync = os.urandom(16)
    size = sum(len(body) for body in bodies)
    head = b"".join((MAGIC, _metadata(schema), sync, zigzag_varint(len(bodies)), zigzag_varint(size)))
    return [head, *bodies, sync]

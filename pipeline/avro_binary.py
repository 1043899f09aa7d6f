"""Reading single fields straight from an Avro binary body, without decoding the record:
a `long` (zig-zag varint), a `string` or `bytes` (a long length, then the bytes), and an
array of strings (blocks of a long count, a negative count followed by the block's byte
size, ending with a 0 count). The sink reads row ids and subject keys this way, the
streams stage the keys of the subject records it indexes. Every reader takes the body and
a position and returns the value and the position after it; ValueError when the body ends
inside the value. Pure."""

from __future__ import annotations

# A record's binary body: its own bytes, or a view into the message that carries it.
Body = bytes | memoryview


def read_long(body: Body, pos: int) -> tuple[int, int]:
    """The zig-zag varint Avro long at `pos`."""
    if pos < len(body) and (first := body[pos]) < 0x80:  # the common case: one byte
        return (first >> 1) ^ -(first & 1), pos + 1
    shift = 0
    value = 0
    while True:
        if pos >= len(body) or shift > 63:
            raise ValueError("truncated Avro long")
        byte = body[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (value >> 1) ^ -(value & 1), pos


def read_bytes(body: Body, pos: int = 0) -> tuple[bytes, int]:
    """The Avro string (or bytes) at `pos`, as bytes."""
    length, pos = read_long(body, pos)
    end = pos + length
    if length < 0 or end > len(body):
        raise ValueError("truncated Avro string")
    return bytes(body[pos:end]), end


def read_string(body: Body, pos: int = 0) -> tuple[str, int]:
    """The Avro string at `pos`, decoded."""
    value, pos = read_bytes(body, pos)
    return value.decode("utf-8"), pos


def read_string_array(body: Body, pos: int) -> tuple[list[bytes], int]:
    """The items of the array of strings at `pos`, as bytes."""
    items: list[bytes] = []
    while True:
        count, pos = read_long(body, pos)
        if count == 0:
            return items, pos
        if count < 0:  # a block with its byte size
            count = -count
            _, pos = read_long(body, pos)
        for _ in range(count):
            item, pos = read_bytes(body, pos)
            items.append(item)

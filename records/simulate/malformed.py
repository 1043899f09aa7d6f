"""Malformed messages for the dead-letter path: a valid event's bytes broken in one of four
ways, each a different failure of the consumer's decoder (see `MALFORMED_KINDS`).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable

from pipeline.schemas import default_catalog
from records.simulate.model import NOT_AVRO, TRUNCATED, UNKNOWN_FINGERPRINT, from_millis


def corrupt(
    encoded: bytes,
    kind: str,
    at: int,
    rng: random.Random,
    between: Callable[[int, int], int],
    new_id: Callable[[], str],
    decodes: Callable[[bytes], bool],
) -> bytes:
    """`encoded` (a single-object message) broken the `kind` way (one of `MALFORMED_KINDS`)."""
    body = encoded[10:]
    if kind == NOT_AVRO:
        return rng.choice(
            (
                json.dumps({"type": "chat.closed", "id": new_id(), "ts": from_millis(at).isoformat()}).encode(),
                b"ERROR 503: upstream timeout while rendering event",
                b"\x1f\x8b\x08\x00" + rng.randbytes(between(20, 80)),  # a gzip header, nothing after
            )
        )
    if kind == TRUNCATED:
        raw = encoded[: 10 + between(1, max(1, len(body) // 2))]
        while decodes(raw):  # never the case for records this shape; checked anyway
            raw = raw[:-1]
        return raw
    if kind == UNKNOWN_FINGERPRINT:
        fingerprint = rng.randbytes(8)
        while default_catalog().by_fingerprint(fingerprint) is not None:
            fingerprint = rng.randbytes(8)
        return b"\xc3\x01" + fingerprint + body
    return b"\x00" + struct.pack(">I", between(1_000_000, 2**31 - 1)) + body

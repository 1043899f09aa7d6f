"""The contract between the streams stage and the sink for data-subject requests: the
signed command on cs.dsr.commands.v1 and the receipt on cs.dsr.receipts.v1. Pure: keys
and bytes in, envelopes and receipts out. Schema names and the epoch are in
`pipeline.dsr`, which this module builds on.

A command message's value is the ORIGINAL DataSubjectRequest bytes (still signed by the
DPO); two headers carry the streams stage's part, signed with its own Ed25519 "command
key" (RECORDS_COMMAND_KEY; the sink trusts RECORDS_COMMAND_PUBLIC_KEYS):
- `dsr.command`: the envelope, compact sorted JSON (`CommandEnvelope.to_bytes`): the
  request id and type, the SHA-256 of the value (so the envelope is bound to exactly the
  DPO-signed request it travels with), the resolved subject keys (only the holder of the
  pepper can compute them), the key of a rectified identifier, the verification time
  (epoch ms), the Kafka-side counts and the command key's id;
- `dsr.command.signature`: hex Ed25519 signature of the `dsr.command` bytes.
The sink executes only what `open_command` returns: a command without the headers, signed
with a key it does not trust, whose signature or value digest does not match, or older
than the configured age (or dated in the future) is refused with a `CommandRejected`
naming the check, never a value. Everything the sink acts on (subject keys, verification
time, counts) comes from the signed envelope; nothing from an unsigned header.

A receipt (`Receipt`) holds counts and times only, never personal data: the streams stage
writes one for a request it refused (REJECTED) or could not work out (FAILED), the sink
one for each request it executed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.dsr import (
    CLOCK_SKEW,
    IdentityVerification,
    RequestType,
    TrustedKeys,
    canonical_json,
    from_millis,
    key_id,
    to_millis,
)
from pipeline.exceptions import CheckFailed

H_DSR_COMMAND = "dsr.command"
H_DSR_COMMAND_SIGNATURE = "dsr.command.signature"
ENVELOPE_VERSION = 1
# HMAC-SHA256 hex digests (pipeline/subject_keys.py); anything else in an envelope is refused.
_SUBJECT_KEY = re.compile(r"[0-9a-f]{64}")
_REQUEST_TYPES = frozenset(RequestType)
_VERIFICATIONS = frozenset(IdentityVerification)


class ReceiptStatus(enum.StrEnum):
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class CommandRejectReason(enum.StrEnum):
    UNSIGNED = "the command carries no signed envelope"
    MALFORMED = "the command's envelope is malformed"
    UNKNOWN_KEY = "the command is signed with a key the sink does not trust"
    BAD_SIGNATURE = "the command's signature does not verify"
    TAMPERED = "the command's envelope does not match the request it carries"
    STALE = "the command is older than the sink accepts"
    FROM_FUTURE = "the command is dated in the future"
    REPLAYED = "a different command for this request was executed already"


class CommandRejected(CheckFailed[CommandRejectReason]):
    """A command the sink must not execute; `reason` says which check failed (no values)."""


def request_digest(value: bytes) -> str:
    """SHA-256 (hex) of a command's value: the DPO-signed request bytes."""
    return hashlib.sha256(value).hexdigest()


@dataclass(frozen=True)
class CommandEnvelope:
    """What the streams stage signs and the sink executes."""

    request_id: str
    request_type: str
    request_sha256: str
    subject_keys: tuple[str, ...]
    verified_at: datetime
    kafka_counts: Mapping[str, int] = field(default_factory=dict)
    new_subject_key: str | None = None

    def to_bytes(self, signing_key_id: str) -> bytes:
        """The signed bytes (canonical JSON), naming the command key that signs them."""
        return canonical_json(
            {
                "version": ENVELOPE_VERSION,
                "key_id": signing_key_id,
                "request_id": self.request_id,
                "request_type": self.request_type,
                "request_sha256": self.request_sha256,
                "subject_keys": list(self.subject_keys),
                "new_subject_key": self.new_subject_key,
                "verified_at": to_millis(self.verified_at),
                "kafka_counts": dict(self.kafka_counts),
            }
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CommandEnvelope:
        """The envelope of a parsed `dsr.command` body; CommandRejected(MALFORMED) names the field."""
        if body.get("version") != ENVELOPE_VERSION:
            raise CommandRejected(CommandRejectReason.MALFORMED, "version")
        for name in ("request_id", "request_type", "request_sha256"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise CommandRejected(CommandRejectReason.MALFORMED, name)
        keys = body.get("subject_keys")
        if not isinstance(keys, list) or not keys or not all(_is_subject_key(k) for k in keys):
            raise CommandRejected(CommandRejectReason.MALFORMED, "subject_keys")
        new_key = body.get("new_subject_key")
        if new_key is not None and not _is_subject_key(new_key):
            raise CommandRejected(CommandRejectReason.MALFORMED, "new_subject_key")
        verified: Any = body.get("verified_at")
        if not _is_int(verified):
            raise CommandRejected(CommandRejectReason.MALFORMED, "verified_at")
        counts = body.get("kafka_counts")
        if not isinstance(counts, dict) or not all(_is_int(v) for v in counts.values()):
            raise CommandRejected(CommandRejectReason.MALFORMED, "kafka_counts")
        return cls(
            request_id=body["request_id"],
            request_type=body["request_type"],
            request_sha256=body["request_sha256"],
            subject_keys=tuple(dict.fromkeys(keys)),
            verified_at=from_millis(int(verified)),
            kafka_counts={str(k): int(v) for k, v in counts.items()},
            new_subject_key=new_key,
        )


def _is_subject_key(value: Any) -> bool:
    return isinstance(value, str) and _SUBJECT_KEY.fullmatch(value) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CommandSigner:
    """The streams stage's command key."""

    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def headers(self, envelope: CommandEnvelope) -> list[tuple[str, bytes]]:
        """The command message's headers: the envelope and its signature."""
        body = envelope.to_bytes(self.key_id)
        return [(H_DSR_COMMAND, body), (H_DSR_COMMAND_SIGNATURE, self.private_key.sign(body).hex().encode())]


def command_headers_of(headers: Iterable[tuple[str, bytes | str | None]] | None) -> tuple[bytes, bytes] | None:
    """(envelope bytes, signature bytes) of a message's headers; None when either is missing."""
    found: dict[str, bytes] = {}
    for name, raw in headers or ():
        if name in (H_DSR_COMMAND, H_DSR_COMMAND_SIGNATURE) and raw is not None:
            found[name] = raw.encode() if isinstance(raw, str) else bytes(raw)
    if H_DSR_COMMAND not in found or H_DSR_COMMAND_SIGNATURE not in found:
        return None
    return found[H_DSR_COMMAND], found[H_DSR_COMMAND_SIGNATURE]


def open_command(
    headers: Iterable[tuple[str, bytes | str | None]] | None,
    value: bytes,
    trusted: TrustedKeys,
    *,
    now: datetime,
    max_age: timedelta,
) -> CommandEnvelope:
    """The verified envelope of a command message; CommandRejected unless it is signed by a
    trusted command key, bound to `value`, and at most `max_age` old (see the module docstring)."""
    pair = command_headers_of(headers)
    if pair is None:
        raise CommandRejected(CommandRejectReason.UNSIGNED)
    body_bytes, signature_hex = pair
    try:
        body = json.loads(body_bytes)
        signature = bytes.fromhex(signature_hex.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise CommandRejected(CommandRejectReason.MALFORMED, "not JSON or not a hex signature") from None
    if not isinstance(body, dict):
        raise CommandRejected(CommandRejectReason.MALFORMED, "not a JSON object")
    public_key = trusted.keys.get(str(body.get("key_id") or ""))
    if public_key is None:
        raise CommandRejected(CommandRejectReason.UNKNOWN_KEY)
    try:
        public_key.verify(signature, body_bytes)
    except InvalidSignature:
        raise CommandRejected(CommandRejectReason.BAD_SIGNATURE) from None
    envelope = CommandEnvelope.from_json(body)
    if envelope.request_sha256 != request_digest(value):
        raise CommandRejected(CommandRejectReason.TAMPERED, "request digest")
    if envelope.verified_at > now + CLOCK_SKEW:
        raise CommandRejected(CommandRejectReason.FROM_FUTURE)
    if now - envelope.verified_at > max_age:
        raise CommandRejected(CommandRejectReason.STALE)
    return envelope


def check_request_matches(envelope: CommandEnvelope, request: Mapping[str, Any]) -> None:
    """CommandRejected(TAMPERED) unless the decoded request is the one the envelope names."""
    if str(request.get("request_id")) != envelope.request_id:
        raise CommandRejected(CommandRejectReason.TAMPERED, "request id")
    if str(request.get("request_type")) != envelope.request_type:
        raise CommandRejected(CommandRejectReason.TAMPERED, "request type")


# ---- receipts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A DsrReceipt: counts and times only, never personal data."""

    request_id: str
    request_type: str  # a RequestType value, or UNKNOWN
    status: ReceiptStatus
    requested_at: datetime
    completed_at: datetime
    store_counts: Mapping[str, int] = field(default_factory=dict)
    detail: str | None = None
    # On a ClickHouse cluster: store -> shard number -> rows (sink/dsr_shards.py); else empty.
    shard_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # How the requester's identity was verified (an IdentityVerification symbol, notice
    # §9a); None when the request recorded none or could not be read.
    identity_verified_by: str | None = None

    @classmethod
    def of(
        cls,
        request_id: str,
        request_type: object,
        status: ReceiptStatus,
        *,
        requested_at: datetime,
        completed_at: datetime,
        store_counts: Mapping[str, int] | None = None,
        detail: str | None = None,
        shard_counts: Mapping[str, Mapping[str, int]] | None = None,
        identity_verified_by: object = None,
    ) -> Receipt:
        """A receipt with an unknown request type as UNKNOWN, times in milliseconds, and an
        identity verification that is not one of IdentityVerification's as None."""
        kind = str(request_type) if isinstance(request_type, str) and request_type in _REQUEST_TYPES else "UNKNOWN"
        verified = str(identity_verified_by) if identity_verified_by in _VERIFICATIONS else None
        return cls(
            request_id,
            kind,
            ReceiptStatus(status),
            from_millis(to_millis(requested_at)),
            from_millis(to_millis(completed_at)),
            {str(k): int(v) for k, v in (store_counts or {}).items()},
            detail,
            {str(k): {str(s): int(n) for s, n in v.items()} for k, v in (shard_counts or {}).items()},
            verified,
        )

    @classmethod
    def for_request(
        cls, request: Mapping[str, Any] | None, request_id: str, status: ReceiptStatus, *, detail: str, now: datetime
    ) -> Receipt:
        """The receipt of a request refused or failed before execution (possibly unreadable:
        `request` None); requested at its issue time when it has one, else now."""
        request = request or {}
        issued_at = request.get("issued_at")
        return cls.of(
            request_id,
            request.get("request_type"),
            status,
            requested_at=issued_at if isinstance(issued_at, datetime) else now,
            completed_at=now,
            detail=detail,
            identity_verified_by=request.get("identity_verified_by"),
        )

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Receipt:
        """A receipt from its Avro value or a stored row of the same columns."""
        return cls.of(
            str(value["request_id"]),
            value.get("request_type"),
            ReceiptStatus(str(value["status"])),
            requested_at=value["requested_at"],
            completed_at=value["completed_at"],
            store_counts=dict(value.get("store_counts") or {}),
            detail=value.get("detail"),
            shard_counts=dict(value.get("shard_counts") or {}),  # absent before the field existed
            identity_verified_by=value.get("identity_verified_by"),
        )

    def to_value(self) -> dict[str, Any]:
        """The DsrReceipt Avro value."""
        return {
            "request_id": self.request_id,
            "request_type": self.request_type,
            "status": self.status.value,
            "requested_at": self.requested_at,
            "completed_at": self.completed_at,
            "store_counts": dict(self.store_counts),
            "detail": self.detail,
            "schema_version": 1,
            "shard_counts": {k: dict(v) for k, v in self.shard_counts.items()},
            "identity_verified_by": self.identity_verified_by,
        }

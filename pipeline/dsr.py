"""Data-subject requests: how the DPO signs them and how the pipeline decides to act.

A request is executed only if all of these hold (checked by `verify_request`):
1. its Ed25519 signature, over the canonical form of every other field of the
   DataSubjectRequest schema (`signed_fields`, derived from the schema, so a field added
   later is signed too), verifies with a DPO public key the pipeline trusts (the key id
   names which one);
2. it is not older than the policy's `request_max_age` (nor from the future beyond a
   small clock skew), so an old captured request cannot be replayed later;
3. its request id was not seen before (the caller keeps the seen ids: a faust table in
   the streams stage, the sink's own records.dsr_executed table).
Everything here is pure: keys in, decisions out. Requests carry identifiers (personal
data), so rejection reasons name the check that failed, never a value.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.epoch_millis import from_millis as from_millis  # re-exported: the DSR modules import it from here
from pipeline.epoch_millis import to_millis
from pipeline.exceptions import CheckFailed, ConfigError
from pipeline.private_files import private_dir
from pipeline.schemas import AvroSchema, default_catalog
from pipeline.subject_keys import IdentifierKind

# The DSR contract's names and constants, defined once (pipeline/dsr_contract.py holds the
# command and receipt types built on them).
REQUEST_SCHEMA = "cs.records.DataSubjectRequest"
RECEIPT_SCHEMA = "cs.records.DsrReceipt"
CLOCK_SKEW = timedelta(minutes=5)
# The fields of a DataSubjectRequest the signature does not cover: the signature itself.
UNSIGNED_FIELDS = frozenset({"signature"})
# Signed fields added after requests were first signed: left out of the signed bytes while
# null, so a request signed before the field existed (decoded with its default) verifies.
LATER_OPTIONAL_FIELDS = frozenset({"identity_verified_by"})
# Which identifier kind each SubjectIdentifiers field is.
IDENTIFIER_FIELDS: Mapping[str, IdentifierKind] = {
    "email": IdentifierKind.EMAIL,
    "phone": IdentifierKind.PHONE,
    "person_number": IdentifierKind.PERSON_NUMBER,
    "app_username": IdentifierKind.APP_USERNAME,
    "visitor_id": IdentifierKind.VISITOR_ID,
}
# Fields a rectification may correct, and the identifier kind when the field is one.
RECTIFIABLE_FIELDS: Mapping[str, IdentifierKind | None] = {
    "name": None,
    "email": IdentifierKind.EMAIL,
    "phone": IdentifierKind.PHONE,
    "postal_address": None,
    "job_title": None,
    "company_name": None,
}
# The stored columns holding each rectifiable field, where they differ from its name: a
# phone number is the chat's `phone` and the call's and recording's `caller_number`
# (notice §5: the caller's number), so correcting it reaches calls and recordings too.
RECTIFIED_COLUMNS: Mapping[str, tuple[str, ...]] = {"phone": ("phone", "caller_number")}


def rectified_columns(field_name: str) -> tuple[str, ...]:
    """Every stored column a rectification of `field_name` rewrites."""
    return RECTIFIED_COLUMNS.get(field_name, (field_name,))


class RequestType(enum.StrEnum):
    ERASURE = "ERASURE"
    ACCESS = "ACCESS"
    RECTIFICATION = "RECTIFICATION"
    RESTRICTION = "RESTRICTION"
    RESTRICTION_LIFTED = "RESTRICTION_LIFTED"
    OBJECTION = "OBJECTION"
    CONSENT_WITHDRAWAL = "CONSENT_WITHDRAWAL"


class IdentityVerification(enum.StrEnum):
    """How the requester proved their identity before the DPO issued the request (notice
    §9a: an official identity document shown in person, or strong electronic
    identification); OTHER records any other way, without free text."""

    IN_PERSON = "IN_PERSON"
    STRONG_ELECTRONIC_ID = "STRONG_ELECTRONIC_ID"
    OTHER = "OTHER"


class RejectReason(enum.StrEnum):
    UNKNOWN_KEY = "unknown signing key"
    BAD_SIGNATURE = "signature does not verify"
    TOO_OLD = "request is older than the policy allows"
    FROM_FUTURE = "request is dated in the future"
    REPLAYED = "request id was already used"
    NO_IDENTIFIER = "request names no identifier"
    INVALID = "request is malformed"


class DsrRejected(CheckFailed[RejectReason]):
    """A request failed a check; `reason` says which (never a value)."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable id of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_fields(schema: AvroSchema) -> tuple[str, ...]:
    """Every field of the request schema except the signature: what the DPO signs."""
    return tuple(name for name in schema.field_names if name not in UNSIGNED_FIELDS)


@cache
def default_signed_fields() -> tuple[str, ...]:
    """`signed_fields` of the DataSubjectRequest schema in the catalog."""
    return signed_fields(default_catalog().get(REQUEST_SCHEMA))


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _canonical_value(v) for k, v in value.items()}
    return value


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Compact JSON with sorted keys: the form every signature here is made over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_bytes(request: Mapping[str, Any], fields: Sequence[str] | None = None) -> bytes:
    """The signed bytes: the signed fields (default: those of the catalog's schema)."""
    names = default_signed_fields() if fields is None else fields
    return canonical_json(
        {
            name: _canonical_value(request.get(name))
            for name in names
            if not (name in LATER_OPTIONAL_FIELDS and request.get(name) is None)
        }
    )


@dataclass(frozen=True)
class DpoSigner:
    private_key: Ed25519PrivateKey
    # The fields signed (None: every field of the catalog's DataSubjectRequest but the signature).
    fields: tuple[str, ...] | None = field(default=None)

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def sign(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request with key_id and signature set."""
        signed = dict(request, key_id=self.key_id)
        signed["signature"] = self.private_key.sign(canonical_bytes(signed, self.fields))
        return signed


@dataclass(frozen=True)
class TrustedKeys:
    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> TrustedKeys:
        return cls({key_id(k): k for k in public_keys})


def identifiers_of(request: Mapping[str, Any]) -> dict[IdentifierKind, str]:
    subject = request.get("subject") or {}
    return {kind: subject[name] for name, kind in IDENTIFIER_FIELDS.items() if subject.get(name)}


def verify_request(
    request: Mapping[str, Any],
    trusted: TrustedKeys,
    *,
    now: datetime,
    max_age: timedelta,
    seen: bool,
    fields: Sequence[str] | None = None,
) -> None:
    """Raise DsrRejected unless the request may be executed (see the module docstring).
    `fields`: the signed fields (default: those of the catalog's schema)."""
    public_key = trusted.keys.get(str(request.get("key_id") or ""))
    if public_key is None:
        raise DsrRejected(RejectReason.UNKNOWN_KEY)
    signature = request.get("signature")
    if not isinstance(signature, (bytes, bytearray)):
        raise DsrRejected(RejectReason.BAD_SIGNATURE)
    try:
        public_key.verify(bytes(signature), canonical_bytes(request, fields))
    except InvalidSignature:
        raise DsrRejected(RejectReason.BAD_SIGNATURE) from None
    issued = request.get("issued_at")
    if not isinstance(issued, datetime):
        raise DsrRejected(RejectReason.INVALID, "issued_at")
    issued = issued if issued.tzinfo else issued.replace(tzinfo=UTC)
    if issued > now + CLOCK_SKEW:
        raise DsrRejected(RejectReason.FROM_FUTURE)
    if now - issued > max_age:
        raise DsrRejected(RejectReason.TOO_OLD)
    if seen:
        raise DsrRejected(RejectReason.REPLAYED)
    if not identifiers_of(request):
        raise DsrRejected(RejectReason.NO_IDENTIFIER)
    if request.get("request_type") == RequestType.RECTIFICATION and (
        request.get("rectify_field") not in RECTIFIABLE_FIELDS or request.get("rectify_value") in (None, "")
    ):
        raise DsrRejected(RejectReason.INVALID, "rectification needs a known field and a value")


def build_request(
    request_type: RequestType,
    identifiers: Mapping[str, str | None],
    *,
    requested_by: str,
    reason: str,
    now: datetime,
    rectify_field: str | None = None,
    rectify_value: str | None = None,
    consent_purpose: str | None = None,
    identity_verified_by: IdentityVerification | None = None,
) -> dict[str, Any]:
    """An unsigned request record (DataSubjectRequest fields, signature still empty).
    `identity_verified_by`: how the requester proved their identity (the CLI requires it;
    None only for callers that issue requests without a requester, such as tests)."""
    subject = {name: (identifiers.get(name) or None) for name in IDENTIFIER_FIELDS}
    if not any(subject.values()):
        raise DsrRejected(RejectReason.NO_IDENTIFIER)
    if request_type is RequestType.RECTIFICATION and rectify_field not in RECTIFIABLE_FIELDS:
        raise DsrRejected(RejectReason.INVALID, f"rectify a field among {', '.join(RECTIFIABLE_FIELDS)}")
    return {
        "request_id": str(uuid.uuid4()),
        "request_type": request_type.value,
        # Avro timestamp-millis keeps milliseconds: sign exactly what travels.
        "issued_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
        "requested_by": requested_by,
        "reason": reason,
        "subject": subject,
        "rectify_field": rectify_field,
        "rectify_value": rectify_value,
        "consent_purpose": consent_purpose,
        "identity_verified_by": identity_verified_by.value if identity_verified_by else None,
        "key_id": "",
        "signature": b"",
        "schema_version": 1,
    }


# ---- key files ---------------------------------------------------------------------


def generate_keypair(private_path: Path, public_path: Path, passphrase: bytes | None = None) -> str:
    """Write a new Ed25519 key pair (private key 0600, optionally encrypted); return its key
    id. Used for the DPO's key and for the pipeline's command key."""
    if private_path.exists() or public_path.exists():
        raise ConfigError(f"{private_path.name} or {public_path.name} already exists: refusing to overwrite a key")
    private_key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_dir(private_path.parent, tighten_existing=False)
    private_dir(public_path.parent, tighten_existing=False)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(private_key.public_key())


def load_private_key(path: Path, passphrase: bytes | None = None, *, holder: str, hint: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file; ConfigError (one line, `hint` says how to
    get one) when it is missing or unusable."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except FileNotFoundError:
        raise ConfigError(f"no {holder} signing key at {path}: {hint}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the {holder} signing key {path.name}: wrong passphrase or not a key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path.name} is not an Ed25519 private key")
    return key


def load_public_keys(paths: tuple[Path, ...], *, holder: str, setting: str) -> TrustedKeys:
    """The trusted Ed25519 public keys in `paths` (PEM); ConfigError naming `setting` when
    none is configured or one is missing or unusable."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"no {holder} public key at {path}: set {setting}") from None
        except ValueError as exc:
            raise ConfigError(f"{path.name} is not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{path.name} is not an Ed25519 public key")
        keys.append(key)
    if not keys:
        raise ConfigError(f"no trusted {holder} public key configured ({setting})")
    return TrustedKeys.of(*keys)


def load_signer(path: Path, passphrase: bytes | None = None) -> DpoSigner:
    return DpoSigner(load_private_key(path, passphrase, holder="DPO", hint="run `records dsr keygen` first"))


def load_trusted_keys(paths: tuple[Path, ...]) -> TrustedKeys:
    return load_public_keys(paths, holder="DPO", setting="RECORDS_DPO_PUBLIC_KEYS")


def utcnow() -> datetime:
    return datetime.now(UTC)

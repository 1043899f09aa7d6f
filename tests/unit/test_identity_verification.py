"""Notice §9a: each data-subject request records how the requester proved their identity,
signed with the request, carried by its receipt and required by the CLI (the report line
is tested in test_report.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.dsr import (
    DpoSigner,
    DsrRejected,
    IdentityVerification,
    RejectReason,
    RequestType,
    TrustedKeys,
    build_request,
    verify_request,
)
from pipeline.dsr_contract import Receipt, ReceiptStatus
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from tests.support.cli import run_records

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=72)
SIGNER = DpoSigner(Ed25519PrivateKey.generate())
TRUSTED = TrustedKeys.of(SIGNER.private_key.public_key())


def _request(verified: IdentityVerification | None) -> dict[str, object]:
    return build_request(
        RequestType.ERASURE,
        {"email": "maija@example.fi"},
        requested_by="dpo.anna",
        reason="ticket 42",
        now=NOW,
        identity_verified_by=verified,
    )


def test_the_verification_travels_signed_and_cannot_be_changed() -> None:
    signed = SIGNER.sign(_request(IdentityVerification.IN_PERSON))
    wire = AvroSerializer(default_catalog().get("DataSubjectRequest"))(signed)
    decoded = AvroDeserializer()(wire).value

    assert decoded["identity_verified_by"] == "IN_PERSON"
    verify_request(decoded, TRUSTED, now=NOW, max_age=MAX_AGE, seen=False)
    for forged in ("OTHER", None):
        with pytest.raises(DsrRejected) as refused:
            verify_request({**decoded, "identity_verified_by": forged}, TRUSTED, now=NOW, max_age=MAX_AGE, seen=False)
        assert refused.value.reason is RejectReason.BAD_SIGNATURE


def test_a_request_signed_before_the_field_existed_still_verifies() -> None:
    old = _request(None)
    del old["identity_verified_by"]  # what a signer of the previous schema signed
    signed = SIGNER.sign(old)
    decoded = AvroDeserializer()(AvroSerializer(default_catalog().get("DataSubjectRequest"))(signed)).value

    assert decoded["identity_verified_by"] is None  # the schema default
    verify_request(decoded, TRUSTED, now=NOW, max_age=MAX_AGE, seen=False)


def test_the_receipt_carries_the_verification_and_nothing_else_new() -> None:
    request = SIGNER.sign(_request(IdentityVerification.STRONG_ELECTRONIC_ID))
    receipt = Receipt.for_request(request, str(request["request_id"]), ReceiptStatus.REJECTED, detail="x", now=NOW)
    value = receipt.to_value()
    assert value["identity_verified_by"] == "STRONG_ELECTRONIC_ID"
    wire = AvroSerializer(default_catalog().get("DsrReceipt"))(value)
    assert Receipt.from_value(AvroDeserializer()(wire).value) == receipt
    free_text = Receipt.of(
        "r", "ERASURE", ReceiptStatus.COMPLETED, requested_at=NOW, completed_at=NOW, identity_verified_by="passport 123"
    )
    assert free_text.identity_verified_by is None  # only the schema's symbols, never free text


def test_the_cli_requires_a_known_method() -> None:
    base = ("dsr", "erase", "--email", "maija@example.fi", "--reason", "ticket 42")
    missing = run_records(*base, env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert missing.returncode != 0
    assert "--identity-verified-by" in missing.stderr and "Missing option" in missing.stderr
    invalid = run_records(*base, "--identity-verified-by", "phone_call", env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert invalid.returncode != 0
    assert "in_person" in invalid.stderr and "strong_electronic_id" in invalid.stderr
    assert "maija" not in missing.stderr + invalid.stderr

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from pipeline.dsr import (
    DpoSigner,
    DsrRejected,
    RejectReason,
    RequestType,
    TrustedKeys,
    build_request,
    canonical_bytes,
    generate_keypair,
    load_signer,
    load_trusted_keys,
    verify_request,
)
from pipeline.exceptions import ConfigError
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from records.cli import app

NOW = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
MAX_AGE = timedelta(hours=72)


def _signed(signer: DpoSigner, **kw: object) -> dict[str, object]:
    request = build_request(
        RequestType.ERASURE, {"email": "maija@example.fi"}, requested_by="dpo.anna", reason="ticket 42", now=NOW
    )
    request.update(kw)
    return signer.sign(request)


@pytest.fixture
def signer() -> DpoSigner:
    return DpoSigner(Ed25519PrivateKey.generate())


@pytest.fixture
def trusted(signer: DpoSigner) -> TrustedKeys:
    return TrustedKeys.of(signer.private_key.public_key())


def test_signed_request_survives_the_wire_and_verifies(signer: DpoSigner, trusted: TrustedKeys) -> None:
    """Every field arrives as the DPO signed it (the request id as a UUID), so the streams
    stage verifies exactly what was signed, and accepts it."""
    schema = default_catalog().get("DataSubjectRequest")
    signed = _signed(signer)
    decoded = AvroDeserializer()(AvroSerializer(schema)(signed)).value

    assert {**decoded, "request_id": str(decoded["request_id"])} == signed
    assert canonical_bytes(decoded) == canonical_bytes(signed)
    verify_request(decoded, trusted, now=NOW, max_age=MAX_AGE, seen=False)  # raises DsrRejected if refused


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_type", "ACCESS"),
        ("subject", {"email": "someone.else@example.fi"}),
        ("issued_at", NOW + timedelta(milliseconds=1)),
        ("reason", "different ticket"),
        ("rectify_value", "x"),
    ],
)
def test_tampering_with_any_signed_field_is_detected(
    signer: DpoSigner, trusted: TrustedKeys, field: str, value: object
) -> None:
    request = _signed(signer)
    request[field] = value
    with pytest.raises(DsrRejected) as err:
        verify_request(request, trusted, now=NOW, max_age=MAX_AGE, seen=False)
    assert err.value.reason is RejectReason.BAD_SIGNATURE


def test_forged_with_another_key_is_rejected(trusted: TrustedKeys) -> None:
    forger = DpoSigner(Ed25519PrivateKey.generate())
    with pytest.raises(DsrRejected) as err:
        verify_request(_signed(forger), trusted, now=NOW, max_age=MAX_AGE, seen=False)
    assert err.value.reason is RejectReason.UNKNOWN_KEY
    request = _signed(forger)
    request["key_id"] = next(iter(trusted.keys))  # claims the DPO's key id
    with pytest.raises(DsrRejected) as err:
        verify_request(request, trusted, now=NOW, max_age=MAX_AGE, seen=False)
    assert err.value.reason is RejectReason.BAD_SIGNATURE


def test_unsigned_replayed_old_and_future_requests_are_rejected(signer: DpoSigner, trusted: TrustedKeys) -> None:
    unsigned = _signed(signer)
    unsigned["signature"] = b""
    cases = [
        (unsigned, NOW, False, RejectReason.BAD_SIGNATURE),
        (_signed(signer), NOW, True, RejectReason.REPLAYED),
        (_signed(signer), NOW + MAX_AGE + timedelta(seconds=1), False, RejectReason.TOO_OLD),
        (_signed(signer), NOW - timedelta(hours=1), False, RejectReason.FROM_FUTURE),
    ]
    for request, now, seen, reason in cases:
        with pytest.raises(DsrRejected) as err:
            verify_request(request, trusted, now=now, max_age=MAX_AGE, seen=seen)
        assert err.value.reason is reason
        assert "maija" not in str(err.value)


def test_requests_need_an_identifier_and_rectification_a_known_field() -> None:
    with pytest.raises(DsrRejected):
        build_request(RequestType.ERASURE, {"email": ""}, requested_by="dpo", reason="r", now=NOW)
    with pytest.raises(DsrRejected):
        build_request(
            RequestType.RECTIFICATION, {"email": "a@b.fi"}, requested_by="dpo", reason="r", now=NOW,
            rectify_field="subject_keys", rectify_value="x",
        )


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    private, public = tmp_path / "dpo.pem", tmp_path / "dpo.pub.pem"
    kid = generate_keypair(private, public, passphrase=b"correct horse")
    assert private.stat().st_mode & 0o777 == 0o600
    signer = load_signer(private, b"correct horse")
    assert signer.key_id == kid
    assert list(load_trusted_keys((public,)).keys) == [kid]
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_signer(private, b"wrong")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_keypair(private, public)


def test_command_keygen_writes_the_pair_the_workers_load(tmp_path: Path) -> None:
    private, public = tmp_path / "command.pem", tmp_path / "command.pub.pem"
    env = {"RECORDS_DATA_DIR": str(tmp_path), "RECORDS_COMMAND_KEY": str(private)}
    env["RECORDS_COMMAND_PUBLIC_KEYS"] = str(public)
    first = CliRunner().invoke(app, ["dsr", "command-keygen"], env=env)
    assert first.exit_code == 0, first.output
    assert private.stat().st_mode & 0o777 == 0o600
    signer = load_signer(private, None)
    assert list(load_trusted_keys((public,)).keys) == [signer.key_id]
    key = private.read_bytes()
    again = CliRunner().invoke(app, ["dsr", "command-keygen"], env=env)
    assert again.exit_code != 0 and private.read_bytes() == key  # never overwritten

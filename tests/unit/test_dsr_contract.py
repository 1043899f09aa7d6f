"""The DSR contract's pure core: the signed command envelope the sink opens, the DPO
signature's coverage of the request schema, and the bound on the seen-requests table.
No Kafka, no ClickHouse (tests/integration/test_dsr_storage.py sends these to the sink)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.dsr import (
    DpoSigner,
    DsrRejected,
    RejectReason,
    RequestType,
    TrustedKeys,
    build_request,
    default_signed_fields,
    signed_fields,
    to_millis,
    verify_request,
)
from pipeline.dsr_contract import (
    H_DSR_COMMAND,
    H_DSR_COMMAND_SIGNATURE,
    CommandEnvelope,
    CommandRejected,
    CommandRejectReason,
    CommandSigner,
    open_command,
    request_digest,
)
from pipeline.schemas import AvroSchema, SchemaCatalog, default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from streams.subject_requests import SEEN_MARGIN, Seen, expired_requests

NOW = datetime(2026, 11, 30, 6, 0, 0, 123000, tzinfo=UTC)
MAX_AGE = timedelta(hours=72)
VALUE = b"the DPO-signed request bytes"
K1, K2 = "a" * 64, "b" * 64
SIGNER = CommandSigner(Ed25519PrivateKey.generate())
TRUSTED = TrustedKeys.of(SIGNER.private_key.public_key())


def _envelope(**overrides: object) -> CommandEnvelope:
    fields: dict[str, object] = {
        "request_id": "3f1c2d4e-0000-4000-8000-000000000001",
        "request_type": "ERASURE",
        "request_sha256": request_digest(VALUE),
        "subject_keys": (K1, K2),
        "verified_at": NOW - timedelta(minutes=1),
        "kafka_counts": {"cs.subjects.v1": 2},
    }
    fields.update(overrides)
    return CommandEnvelope(**fields)  # type: ignore[arg-type]


def _open(headers: list[tuple[str, bytes]], value: bytes = VALUE) -> CommandEnvelope:
    return open_command(headers, value, TRUSTED, now=NOW, max_age=MAX_AGE)


# ---- the command envelope ----------------------------------------------------------------


def test_a_signed_envelope_opens_to_exactly_what_was_signed() -> None:
    envelope = _envelope(new_subject_key=K2)
    assert _open(SIGNER.headers(envelope)) == envelope


def _tampered_body(headers: list[tuple[str, bytes]], **changes: object) -> list[tuple[str, bytes]]:
    body = json.loads(dict(headers)[H_DSR_COMMAND])
    body.update(changes)
    signature = dict(headers)[H_DSR_COMMAND_SIGNATURE]
    return [(H_DSR_COMMAND, json.dumps(body).encode()), (H_DSR_COMMAND_SIGNATURE, signature)]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no headers", CommandRejectReason.UNSIGNED),
        ("the old unsigned headers", CommandRejectReason.UNSIGNED),
        ("no signature", CommandRejectReason.UNSIGNED),
        ("another key", CommandRejectReason.UNKNOWN_KEY),
        ("another person's keys", CommandRejectReason.BAD_SIGNATURE),
        ("verified_at 1970", CommandRejectReason.BAD_SIGNATURE),
        ("signature not hex", CommandRejectReason.MALFORMED),
        ("another request", CommandRejectReason.TAMPERED),
        ("400 days old", CommandRejectReason.STALE),
        ("from the future", CommandRejectReason.FROM_FUTURE),
        ("keys that are not subject keys", CommandRejectReason.MALFORMED),
    ],
)
def test_a_command_the_sink_must_not_execute_is_refused_with_its_reason(case: str, reason: CommandRejectReason) -> None:
    good = SIGNER.headers(_envelope())
    value = VALUE
    headers: list[tuple[str, bytes]] = {
        "no headers": [],
        "the old unsigned headers": [("dsr.subject_keys", K1.encode()), ("dsr.verified_at", NOW.isoformat().encode())],
        "no signature": good[:1],
        "another key": CommandSigner(Ed25519PrivateKey.generate()).headers(_envelope()),
        "another person's keys": _tampered_body(good, subject_keys=[K2]),
        "verified_at 1970": _tampered_body(good, verified_at=0),
        "signature not hex": [good[0], (H_DSR_COMMAND_SIGNATURE, b"zz")],
        "another request": good,
        "400 days old": SIGNER.headers(_envelope(verified_at=NOW - timedelta(days=400))),
        "from the future": SIGNER.headers(_envelope(verified_at=NOW + timedelta(hours=1))),
        "keys that are not subject keys": SIGNER.headers(_envelope(subject_keys=("anna@example.fi",))),
    }[case]
    if case == "another request":
        value = b"other request bytes"
    with pytest.raises(CommandRejected) as caught:
        _open(headers, value)
    assert caught.value.reason is reason
    assert "anna" not in str(caught.value)


# ---- the DPO's signature covers the schema -----------------------------------------------


def test_the_dpo_signs_every_field_of_the_request_schema_but_the_signature() -> None:
    schema = default_catalog().get("DataSubjectRequest")
    assert set(default_signed_fields()) == set(schema.field_names) - {"signature"}


def test_a_field_added_to_the_schema_later_is_signed_too() -> None:
    definition = copy.deepcopy(default_catalog().get("DataSubjectRequest").definition)
    definition["fields"].insert(-1, {"name": "legal_basis", "type": "string", "default": ""})
    schema = AvroSchema.from_definition(definition)
    fields = signed_fields(schema)
    assert "legal_basis" in fields
    signer = DpoSigner(Ed25519PrivateKey.generate(), fields=fields)
    trusted = TrustedKeys.of(signer.private_key.public_key())
    request = build_request(RequestType.ERASURE, {"email": "maija@example.fi"}, requested_by="dpo", reason="t", now=NOW)
    signed = signer.sign({**request, "legal_basis": "Art. 17(1)(a)"})
    decoded = AvroDeserializer(catalog=SchemaCatalog([schema]))(AvroSerializer(schema)(signed)).value
    verify_request(decoded, trusted, now=NOW, max_age=MAX_AGE, seen=False, fields=fields)
    with pytest.raises(DsrRejected) as caught:
        verify_request(
            {**decoded, "legal_basis": "Art. 6(1)(f)"}, trusted, now=NOW, max_age=MAX_AGE, seen=False, fields=fields
        )
    assert caught.value.reason is RejectReason.BAD_SIGNATURE


# ---- the seen-requests table stays bounded -------------------------------------------------


def test_seen_request_ids_past_the_max_age_and_margin_are_forgotten() -> None:
    def entry(name: bytes, age: timedelta) -> tuple[bytes, dict[str, object]]:
        return name, Seen(0, 1, to_millis(NOW - age), True).to_json()

    entries = [
        entry(b"fresh", timedelta(hours=1)),
        entry(b"at the edge", MAX_AGE + SEEN_MARGIN),
        entry(b"old", MAX_AGE + SEEN_MARGIN + timedelta(minutes=6)),
        entry(b"400 days", timedelta(days=400)),
        (b"empty", {}),
    ]
    assert expired_requests(entries, now=NOW, max_age=MAX_AGE) == [b"old", b"400 days", b"empty"]

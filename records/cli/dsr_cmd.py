"""`records dsr ...`: the DPO's commands. Every request is signed with the DPO's Ed25519
key and produced to `cs.dsr.v1`; the pipeline verifies it before acting and answers with
a receipt on `cs.dsr.receipts.v1` (and in the `dsr_receipts` table)."""

from __future__ import annotations

import enum
import getpass
import inspect
import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from confluent_kafka import Consumer, TopicPartition

from pipeline.avro_json import to_jsonable
from pipeline.config import Settings, load_settings
from pipeline.dsr import (
    RECTIFIABLE_FIELDS,
    IdentityVerification,
    RequestType,
    build_request,
    generate_keypair,
    load_signer,
    utcnow,
)
from pipeline.exceptions import RecordsError
from pipeline.kafka.producer import KafkaProducer
from pipeline.topics import DSR, DSR_RECEIPTS
from records.wiring import Wiring


class ConsentPurpose(enum.StrEnum):
    CONTACT_DETAILS = "CONTACT_DETAILS"
    CALL_RECORDING = "CALL_RECORDING"
    SERVICE_DEVELOPMENT = "SERVICE_DEVELOPMENT"


dsr_app = typer.Typer(help="Data-subject requests, signed by the DPO.", no_args_is_help=True)

Email = Annotated[str | None, typer.Option("--email", help="Email address of the data subject.")]
Phone = Annotated[str | None, typer.Option("--phone", help="Phone number (any format).")]
PersonNumber = Annotated[str | None, typer.Option("--person-number", help="myStaff personnel number.")]
Username = Annotated[str | None, typer.Option("--username", help="myStaff app username.")]
VisitorId = Annotated[str | None, typer.Option("--visitor-id", help="Web chat visitor id.")]
Reason = Annotated[str, typer.Option("--reason", help="Reference of the verified request (ticket); no personal data.")]
By = Annotated[str | None, typer.Option("--by", help="DPO username for the audit trail (default: login name).")]


class VerifiedBy(enum.StrEnum):
    """How the requester proved their identity (notice §9a), as the DPO types it."""

    in_person = "in_person"
    strong_electronic_id = "strong_electronic_id"
    other = "other"

    @property
    def verification(self) -> IdentityVerification:
        return IdentityVerification(self.value.upper())


Verified = Annotated[
    VerifiedBy,
    typer.Option(
        "--identity-verified-by",
        help="How the requester proved their identity (notice §9a): in_person (official ID shown at an office), "
        "strong_electronic_id, or other. Required; signed into the request and counted by the report.",
        case_sensitive=False,
    ),
]


def _passphrase(settings: Settings) -> bytes | None:
    return settings.dpo_key_passphrase.get().encode() if settings.dpo_key_passphrase else None


@dsr_app.command("keygen")
def keygen() -> None:
    """Create the DPO's Ed25519 key pair (private key mode 0600; public key for the pipeline)."""
    settings = load_settings()
    if settings.dpo_private_key is None or not settings.dpo_public_keys:
        raise RecordsError("set RECORDS_DPO_PRIVATE_KEY and RECORDS_DPO_PUBLIC_KEYS")
    kid = generate_keypair(settings.dpo_private_key, settings.dpo_public_keys[0], _passphrase(settings))
    typer.echo(f"key id {kid}")
    typer.echo(f"private key (keep with the DPO): {settings.dpo_private_key}")
    typer.echo(f"public key (give to the pipeline, RECORDS_DPO_PUBLIC_KEYS): {settings.dpo_public_keys[0]}")


@dsr_app.command("command-keygen")
def command_keygen() -> None:
    """Create the pipeline's command key pair: the streams worker signs its commands to the
    sink with the private half (RECORDS_COMMAND_KEY), the sink trusts the public half
    (RECORDS_COMMAND_PUBLIC_KEYS). Refuses to overwrite an existing key."""
    settings = load_settings()
    if settings.command_private_key is None or not settings.command_public_keys:
        raise RecordsError("set RECORDS_COMMAND_KEY and RECORDS_COMMAND_PUBLIC_KEYS")
    kid = generate_keypair(settings.command_private_key, settings.command_public_keys[0])
    typer.echo(f"key id {kid}")
    typer.echo(f"private key (streams worker only, RECORDS_COMMAND_KEY): {settings.command_private_key}")
    typer.echo(f"public key (sink, RECORDS_COMMAND_PUBLIC_KEYS): {settings.command_public_keys[0]}")


def issue(
    request_type: RequestType,
    identifiers: dict[str, str | None],
    *,
    reason: str,
    by: str | None,
    identity_verified_by: IdentityVerification,
    settings: Settings | None = None,
    **extra: Any,
) -> str:
    """Build, sign and produce one request; returns its id. `identity_verified_by`: how
    the requester proved their identity (notice §9a), signed into the request."""
    settings = settings or load_settings()
    if settings.dpo_private_key is None:
        raise RecordsError("set RECORDS_DPO_PRIVATE_KEY")
    signer = load_signer(settings.dpo_private_key, _passphrase(settings))
    request = build_request(
        request_type,
        identifiers,
        requested_by=by or getpass.getuser(),
        reason=reason,
        now=utcnow(),
        identity_verified_by=identity_verified_by,
        **extra,
    )
    signed = signer.sign(request)
    payload = Wiring(settings).serde.encoder("DataSubjectRequest")(signed)
    with KafkaProducer(settings.kafka) as producer:
        # Connected first: an idempotent producer's first message, produced before any broker
        # is up, waits for its producer id on librdkafka's retry timer (~0.5 s here, against
        # ~0.07 s for this metadata request and the message after it).
        producer.producer.list_topics(DSR.name, timeout=30)
        producer.produce(DSR.name, payload, key=signed["request_id"].encode())
    if producer.stats.failed:
        raise RecordsError(f"request not delivered: {producer.stats.describe_errors()}")
    return str(signed["request_id"])


# Every request command takes the same options: the subject's identifiers (at least one),
# the reference and identity check of the verified request, and who issues it. typer reads a
# command's options from its signature, so each command's signature is these plus its own.
_KW = inspect.Parameter.KEYWORD_ONLY
_REQUEST_OPTIONS = (
    inspect.Parameter("reason", _KW, annotation=Reason),
    inspect.Parameter("verified", _KW, annotation=Verified),
    *(
        inspect.Parameter(name, _KW, annotation=option, default=None)
        for name, option in (
            ("email", Email),
            ("phone", Phone),
            ("person_number", PersonNumber),
            ("username", Username),
            ("visitor_id", VisitorId),
            ("by", By),
        )
    ),
)
# option name -> the request's identifier field
_IDENTIFIERS = {
    "email": "email",
    "phone": "phone",
    "person_number": "person_number",
    "username": "app_username",
    "visitor_id": "visitor_id",
}


def _request_command(
    name: str,
    request_type: RequestType,
    doc: str,
    *own: inspect.Parameter,
    fields: Callable[..., dict[str, Any]] = dict,
) -> None:
    """Register `records dsr NAME`: issue a `request_type` request and print its id. `own`:
    the command's options besides the shared ones; `fields` turns them into request fields."""

    def command(**options: Any) -> None:
        identifiers = {field: options.pop(option) for option, field in _IDENTIFIERS.items()}
        reason, verified, by = options.pop("reason"), options.pop("verified"), options.pop("by")
        request_id = issue(
            request_type,
            identifiers,
            reason=reason,
            by=by,
            identity_verified_by=verified.verification,
            **fields(**options),
        )
        typer.echo(request_id)

    command.__signature__ = inspect.Signature([*own, *_REQUEST_OPTIONS])  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    dsr_app.command(name)(command)


_request_command("erase", RequestType.ERASURE, "Erase the subject from every store, Kafka included (GDPR Art. 17).")
_request_command("export", RequestType.ACCESS, "Export everything held about the subject as JSON (Art. 15, 20).")
_request_command("restrict", RequestType.RESTRICTION, "Keep the subject's data but hide it from analysis (Art. 18).")
_request_command("unrestrict", RequestType.RESTRICTION_LIFTED, "Lift a restriction or objection.")
_request_command(
    "object", RequestType.OBJECTION, "Stop processing based on legitimate interest for the subject (Art. 21)."
)
_request_command(
    "rectify",
    RequestType.RECTIFICATION,
    "Correct a field so that every store shows the corrected value (Art. 16).",
    inspect.Parameter(
        "field",
        _KW,
        annotation=Annotated[str, typer.Option("--field", help=f"Field to correct: {', '.join(RECTIFIABLE_FIELDS)}.")],
    ),
    inspect.Parameter("value", _KW, annotation=Annotated[str, typer.Option("--value", help="The corrected value.")]),
    fields=lambda field, value: {"rectify_field": field, "rectify_value": value},
)
_request_command(
    "withdraw-consent",
    RequestType.CONSENT_WITHDRAWAL,
    "Withdraw consent: consent-based data stops being collected and is cleared (Art. 7(3)).",
    inspect.Parameter(
        "purpose",
        _KW,
        annotation=Annotated[ConsentPurpose | None, typer.Option("--purpose", help="Which consent (default: all).")],
        default=None,
    ),
    fields=lambda purpose: {"consent_purpose": purpose.value if purpose else None},
)


# How long one read of the receipts topic may wait: librdkafka's batch consume returns
# only when its batch is full or this has passed, so a receipt arriving while it waits is
# seen this much later at most (it was 0.5 s: 0.0-0.4 s of an erasure's full path).
RECEIPT_POLL_S = 0.05


def find_receipt(settings: Settings, request_id: str, *, wait_s: float = 0.0) -> dict[str, Any] | None:
    """The newest receipt for a request on the receipts topic, waiting up to `wait_s`."""
    consumer = Consumer(
        {
            **settings.kafka.as_librdkafka_dict(),
            "group.id": "records-dsr-status",
            "enable.auto.commit": "false",
            "log_level": 4,
        }
    )
    decode = Wiring(settings).serde.decode
    try:
        metadata = consumer.list_topics(DSR_RECEIPTS.name, timeout=10)
        partitions = [TopicPartition(DSR_RECEIPTS.name, p, 0) for p in metadata.topics[DSR_RECEIPTS.name].partitions]
        consumer.assign(partitions)
        found: dict[str, Any] | None = None
        deadline = time.monotonic() + max(wait_s, 2.0)
        while time.monotonic() < deadline:
            for message in consumer.consume(500, RECEIPT_POLL_S):
                if message.error() is None and message.key() == request_id.encode() and message.value():
                    found = decode(message.value()).value
            if found is not None and found.get("status") != "PENDING":
                return found
        return found
    finally:
        consumer.close()


@dsr_app.command("status")
def status(
    request_id: str,
    wait: Annotated[float, typer.Option("--wait", help="Wait up to N seconds for the receipt.")] = 0.0,
) -> None:
    """Show the receipt of a request (no personal data), or that it is still pending."""
    receipt = find_receipt(load_settings(), request_id, wait_s=wait)
    if receipt is None:
        typer.echo(f"{request_id}: no receipt yet (pending)")
        raise typer.Exit(3)
    typer.echo(json.dumps(to_jsonable(receipt), indent=2, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.add_typer(dsr_app, name="dsr")

"""The secrets the test workers run with, so a test can compute what they compute: the
pepper behind every subject key, the DPO key whose signatures they trust and the key the
streams worker signs its commands to the sink with (without either the streams worker
refuses to start; without their public halves the sink does). Fresh for every test session."""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from pipeline.dsr import DpoSigner
from pipeline.subject_keys import SubjectKeyer

PEPPER_HEX = secrets.token_hex(32)
KEYER = SubjectKeyer(bytes.fromhex(PEPPER_HEX))
DPO_SIGNER = DpoSigner(Ed25519PrivateKey.generate())
COMMAND_KEY = Ed25519PrivateKey.generate()


def trusted_keys_env(directory: Path) -> dict[str, str]:
    """Write the public halves of DPO_SIGNER and COMMAND_KEY to `directory` (dpo.pub.pem,
    command.pub.pem) and return the settings that make a worker trust them."""
    directory.mkdir(parents=True, exist_ok=True)
    dpo, command = directory / "dpo.pub.pem", directory / "command.pub.pem"
    for key, path in ((DPO_SIGNER.private_key, dpo), (COMMAND_KEY, command)):
        path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return {"RECORDS_DPO_PUBLIC_KEYS": str(dpo), "RECORDS_COMMAND_PUBLIC_KEYS": str(command)}


def write_dpo_keys(directory: Path) -> tuple[Path, Path]:
    """DPO_SIGNER's key pair as files in `directory` (dpo.pem, dpo.pub.pem), for `records dsr`
    to sign with (RECORDS_DPO_PRIVATE_KEY) and the workers to trust."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "dpo.pem", directory / "dpo.pub.pem"
    key = DPO_SIGNER.private_key
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public

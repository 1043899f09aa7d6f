"""The secrets the test workers run with, so a test can compute what they compute: the
pepper behind every subject key, the DPO key whose signatures they trust and the key the
streams worker signs its commands to the sink with (without either the streams worker
refuses to start). Fresh for every test session."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.dsr import DpoSigner
from pipeline.subject_keys import SubjectKeyer

PEPPER_HEX = secrets.token_hex(32)
KEYER = SubjectKeyer(bytes.fromhex(PEPPER_HEX))
DPO_SIGNER = DpoSigner(Ed25519PrivateKey.generate())
COMMAND_KEY = Ed25519PrivateKey.generate()

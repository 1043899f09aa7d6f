"""The streams stage's worker without a broker, for unit tests that hand it faust-shaped
events directly: its data directory a test's own, a fresh metrics registry, a command key
of its own."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline.config import load_settings
from pipeline.dsr_contract import CommandSigner
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from streams.app import StreamsWorker


def streams_worker(data_dir: Path, keyer: SubjectKeyer) -> tuple[StreamsWorker, CollectorRegistry]:
    """A StreamsWorker keying subjects with `keyer`, its data under `data_dir`, and the
    registry its metrics are in."""
    registry = CollectorRegistry()
    settings = load_settings(env={"RECORDS_DATA_DIR": str(data_dir)})
    signer = CommandSigner(Ed25519PrivateKey.generate())
    return StreamsWorker(settings, keyer, serde=Serde(), registry=registry, command_signer=signer), registry

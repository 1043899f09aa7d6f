"""The streams worker's faust app starts its tables without faust's 1 s pause
(streams.prompt_tables): the tables' channels, then their recovery, and no sleep."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline.config import load_settings
from pipeline.dsr_contract import CommandSigner
from pipeline.serde import Serde
from pipeline.subject_keys import SubjectKeyer
from streams.app import StreamsWorker
from streams.prompt_tables import PromptTableManager


def test_the_worker_starts_its_tables_at_once(tmp_path: Path) -> None:
    settings = load_settings(env={"RECORDS_DATA_DIR": str(tmp_path)})
    signer = CommandSigner(Ed25519PrivateKey.generate())
    worker = StreamsWorker(
        settings, SubjectKeyer(bytes(range(32))), serde=Serde(), registry=CollectorRegistry(), command_signer=signer
    )
    manager = worker.app.tables
    assert isinstance(manager, PromptTableManager)
    assert {"consent", "erasures", "dsr-seen"} <= set(manager)

    steps: list[str] = []

    async def step(name: str) -> None:
        steps.append(name)

    manager.sleep = lambda seconds: step(f"sleep {seconds}")
    manager._update_channels = lambda: step("channels")
    manager._recovery = SimpleNamespace(start=lambda: step("recovery"))  # what the recovery property returns
    asyncio.run(manager.on_start())
    assert steps == ["channels", "recovery"]

"""Fixtures of the fault tests: one isolated pipeline (streams app id, sink group, chDB
directory, secrets) per test, its processes stopped and its changelogs deleted after."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.kafka.admin import KafkaAdmin
from records.local_kafka import LocalBroker, free_port
from tests.support.fault_steps import chattr
from tests.support.pipeline_harness import Pipeline, isolated_pipeline


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of the test's own (stopped, restarted or frozen by the test), on free ports."""
    settings = load_settings()
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    broker = LocalBroker(tmp_path / "kafka", settings.kafka_libs_dir, port=port, controller_port=controller)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def freezable(tmp_path: Path) -> Iterator[list[Path]]:
    """The directories a test freezes (tests/support/fault_steps.py `chattr`); always
    thawed again (or the test is skipped where the file system or the user cannot)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        chattr("+i", [probe])
        chattr("-i", [probe])
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    frozen: list[Path] = []
    yield frozen
    chattr("-i", frozen)


@pytest.fixture
def pipeline(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[Pipeline]:
    """An isolated pipeline on the session's broker."""
    with isolated_pipeline(kafka_bootstrap, kafka_admin, tmp_path) as line:
        yield line

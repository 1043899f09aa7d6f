"""Fixtures of the fault tests: one isolated pipeline (streams app id, sink group, chDB
directory, secrets) per test, its processes stopped and its changelogs deleted after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka.admin import KafkaAdmin
from tests.support.pipeline_harness import Pipeline, isolated_pipeline


@pytest.fixture
def pipeline(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[Pipeline]:
    """An isolated pipeline on the session's broker."""
    with isolated_pipeline(kafka_bootstrap, kafka_admin, tmp_path) as line:
        yield line

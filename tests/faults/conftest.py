"""Fixtures of the fault tests: one isolated pipeline (streams app id, sink group, chDB
directory, secrets) per test, its processes stopped and its changelogs deleted after."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline import topics
from pipeline.kafka.admin import KafkaAdmin
from tests.faults.harness import (
    CHANGELOG_SUFFIXES,
    SINK_INPUTS,
    STREAMS_INPUTS,
    Process,
    Secrets,
    sink_process,
    start_group_at_end,
    streams_process,
)


@dataclass
class Pipeline:
    bootstrap: str
    work: Path
    app_id: str
    sink_group: str
    keys: Secrets = field(default_factory=Secrets)
    started: list[Process] = field(default_factory=list)

    @property
    def chdb_path(self) -> Path:
        return self.work / "chdb"

    def streams(self) -> Process:
        process = streams_process(self.bootstrap, self.app_id, self.work, self.keys)
        self.started.append(process)
        return process.start()

    def sink(self, *extra: str, batch_size: int = 2000) -> Process:
        process = sink_process(
            self.bootstrap, self.sink_group, self.chdb_path, self.work, self.keys, *extra, batch_size=batch_size
        )
        self.started.append(process)
        return process.start()


@contextlib.contextmanager
def isolated_pipeline(bootstrap: str, admin: KafkaAdmin, work: Path) -> Iterator[Pipeline]:
    """A pipeline of its own on `bootstrap`; its processes stopped and changelogs deleted after."""
    admin.create_topics(list(topics.ALL_TOPICS))  # what `records topics ensure` creates
    tag = uuid.uuid4().hex[:10]
    line = Pipeline(bootstrap, work, f"faults-{tag}", f"faults-sink-{tag}")
    # The app's changelogs exist before it starts, as `records topics ensure` makes them for
    # the real app id (a changelog the worker creates itself is unknown to its metadata for
    # a few seconds: a data-subject request read then crashes the DSR agent and is lost).
    admin.create_topics(
        [
            dataclasses.replace(spec, name=spec.name.replace(topics.STREAMS_APP_ID, line.app_id, 1))
            for spec in (topics.CONSENT_CHANGELOG, topics.ERASURES_CHANGELOG, topics.DSR_SEEN_CHANGELOG)
        ]
    )
    start_group_at_end(bootstrap, line.app_id, STREAMS_INPUTS)
    start_group_at_end(bootstrap, line.sink_group, SINK_INPUTS)
    try:
        yield line
    finally:
        for process in line.started:
            process.stop()
        admin.delete_topics([f"{line.app_id}-{suffix}" for suffix in CHANGELOG_SUFFIXES])


@pytest.fixture
def pipeline(kafka_bootstrap: str, kafka_admin: KafkaAdmin, tmp_path: Path) -> Iterator[Pipeline]:
    """An isolated pipeline on the session's broker."""
    with isolated_pipeline(kafka_bootstrap, kafka_admin, tmp_path) as line:
        yield line

"""Kafka fixtures: a real broker for the whole session, and factories for topics and
consumer groups.

With KAFKA_BOOTSTRAP set to a cluster that answers, the tests use it. Otherwise a broker
of their own is started on free ports in a temporary directory (jars from the shared
cache, fetched if missing) and stopped at the end of the session.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.topics import TopicSpec
from records.local_kafka import LocalBroker, free_port, metadata_ok

REPO = Path(__file__).resolve().parents[2]


def _settings() -> Settings:
    """The environment's settings; the jar cache defaults to the repository's `.cache`."""
    return load_settings({"RECORDS_CACHE_DIR": str(REPO / ".cache"), **os.environ})


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = _settings()
    if os.environ.get("KAFKA_BOOTSTRAP") and metadata_ok(settings.kafka, timeout=5.0):
        yield settings.kafka.bootstrap
        return
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka"), settings.kafka_libs_dir, port=port, controller_port=controller_port
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> Settings:
    settings = _settings()
    return dataclasses.replace(settings, kafka=settings.kafka.with_bootstrap(kafka_bootstrap))


@pytest.fixture(scope="session")
def kafka_admin(kafka_settings: Settings) -> KafkaAdmin:
    return KafkaAdmin(kafka_settings.kafka)


@pytest.fixture
def topic_factory(kafka_admin: KafkaAdmin) -> Iterator[Callable[..., TopicSpec]]:
    """Create uniquely named topics: `topic_factory(partitions=1, config={...})`; they are
    deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None, prefix: str = "test") -> TopicSpec:
        spec = TopicSpec(f"{prefix}.{uuid.uuid4().hex[:12]}", "test key", "test topic", partitions, config or {})
        kafka_admin.create_topics([spec])
        created.append(spec.name)
        return spec

    yield make
    kafka_admin.delete_topics(created)


@pytest.fixture
def group_id() -> str:
    """A consumer group id no other test uses."""
    return f"test-group-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the broker is marked `kafka` (deselect with -m 'not kafka')."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)

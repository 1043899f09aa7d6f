"""Kafka fixtures: a real broker for the whole session, and factories for topics and
consumer groups. A broker that already answers (KAFKA_BOOTSTRAP, or the local default)
is reused; otherwise one is started on free ports in a temporary directory and stopped
at the end."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.config import DEFAULT_BOOTSTRAP, Settings, load_settings
from pipeline.kafka.admin import KafkaAdmin
from pipeline.local_kafka import LocalBroker, free_port, metadata_ok
from pipeline.topics import TopicSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wanted = os.environ.get("KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP
    if metadata_ok(wanted, timeout=2.0):
        yield wanted
        return
    settings = load_settings({"RECORDS_CACHE_DIR": str(REPO / ".cache")})
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    state_dir = tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(state_dir, settings.kafka_libs_dir, port=port, controller_port=controller_port)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> Settings:
    settings = load_settings()
    return dataclasses.replace(settings, kafka=settings.kafka.with_bootstrap(kafka_bootstrap))


@pytest.fixture(scope="session")
def kafka_admin(kafka_settings: Settings) -> KafkaAdmin:
    return KafkaAdmin(kafka_settings.kafka)


@pytest.fixture
def topic_factory(kafka_admin: KafkaAdmin) -> Iterator[Callable[..., TopicSpec]]:
    """Create uniquely named topics; they are deleted after the test."""
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
    return f"test-group-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)

"""Topics as code against the real broker."""

from __future__ import annotations

import dataclasses
import time
import uuid

from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.topics import ALL_TOPICS, TopicSpec
from tests.support.cli import cli_env, run_records


def _private_copies() -> list[TopicSpec]:
    """The product's topic specs under unique names, so tests never disturb each other."""
    suffix = uuid.uuid4().hex[:8]
    return [dataclasses.replace(s, name=f"{s.name}.t{suffix}") for s in ALL_TOPICS]


def _wait_until_described(admin: KafkaAdmin, topic: str, config: dict[str, str], timeout: float = 30.0) -> None:
    """Wait until the broker describes `topic` with `config`: an accepted change reaches the
    metadata a broker answers from a moment later (longer on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while any(admin.topic_states([topic])[topic].config.get(k) != v for k, v in config.items()):
        assert time.monotonic() < deadline, f"{topic} not described with {config} after {timeout} s"
        time.sleep(0.2)


def test_ensure_twice_changes_nothing_the_second_time(kafka_admin: KafkaAdmin) -> None:
    specs = _private_copies()
    try:
        first = ensure_topics(kafka_admin, specs)
        assert {c.topic for c in first if c.kind == "create"} == {s.name for s in specs}
        assert ensure_topics(kafka_admin, specs) == []
        states = kafka_admin.topic_states(s.name for s in specs)
        for spec in specs:
            assert states[spec.name].partitions == spec.partitions
            for key, value in spec.config.items():
                assert states[spec.name].config[key] == value, (spec.name, key)
    finally:
        kafka_admin.delete_topics([s.name for s in specs])


def test_config_drift_is_corrected(kafka_admin: KafkaAdmin) -> None:
    specs = _private_copies()[:2]
    try:
        ensure_topics(kafka_admin, specs)
        drifted = specs[0].name
        kafka_admin.alter_configs(drifted, {"retention.ms": "60000", "segment.ms": "999999"})
        _wait_until_described(kafka_admin, drifted, {"retention.ms": "60000", "segment.ms": "999999"})
        changes = ensure_topics(kafka_admin, specs)
        assert sorted(c.describe() for c in changes) == [
            f"{drifted}: retention.ms 60000 -> {specs[0].config['retention.ms']}",
            f"{drifted}: segment.ms 999999 -> {specs[0].config['segment.ms']}",
        ]
        assert kafka_admin.topic_states([drifted])[drifted].config["retention.ms"] == specs[0].config["retention.ms"]
        assert ensure_topics(kafka_admin, specs) == []
    finally:
        kafka_admin.delete_topics([s.name for s in specs])


def test_records_topics_ensure_is_idempotent_and_list_shows_every_topic(kafka_bootstrap: str) -> None:
    env = cli_env(KAFKA_BOOTSTRAP=kafka_bootstrap)

    run_records("topics", "ensure", env=env, check=True)
    second = run_records("topics", "ensure", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"all {len(ALL_TOPICS)} topics up to date"
    listed = run_records("topics", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    for spec in ALL_TOPICS:
        assert spec.name in listed.stdout

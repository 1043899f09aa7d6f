"""`records topics audit [--fix]` against the real local broker: a retention changed by
hand is caught, `--fix` repairs it, and a second audit finds no drift."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.policy import default_policy
from pipeline.topics import ALL_TOPICS, DAY_MS, by_name
from retention_jobs.linger import format_ms, topic_linger
from retention_jobs.topics_audit import audit
from tests.support.cli import cli_env, run_records

TAMPERED = "cs.dlq.v1"
BY_HAND_MS = str(90 * DAY_MS)


@pytest.fixture
def pipeline_topics(kafka_admin: KafkaAdmin) -> Iterator[KafkaAdmin]:
    """Every topic of pipeline/topics.py as specified, restored after the test."""
    ensure_topics(kafka_admin, ALL_TOPICS)
    try:
        yield kafka_admin
    finally:
        ensure_topics(kafka_admin, ALL_TOPICS)


def _beyond_bound_by_specification() -> list[str]:
    """Topics whose specified configuration itself lets erased data linger past the bound."""
    bound_ms = int(default_policy().erasure_max_linger.total_seconds() * 1000)
    return [t.name for t in ALL_TOPICS if t.personal_data and topic_linger(t.config).exceeds(bound_ms)]


def test_audit_catches_a_hand_changed_retention_and_fix_repairs_it(
    pipeline_topics: KafkaAdmin, kafka_bootstrap: str
) -> None:
    pipeline_topics.alter_configs(TAMPERED, {"retention.ms": BY_HAND_MS})

    caught = run_records("topics", "audit", env=cli_env(KAFKA_BOOTSTRAP=kafka_bootstrap))

    assert caught.returncode == 1, caught.stderr
    error = caught.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    assert f"{TAMPERED} (drift: retention.ms; linger exceeds the erasure bound)" in error
    assert "--fix" in error
    assert f"retention.ms {BY_HAND_MS} (expected {by_name(TAMPERED).config['retention.ms']})" in caught.stdout
    assert "91 d" in caught.stdout  # 90 d retention + 1 d segment

    fixed = run_records("topics", "audit", "--fix", env=cli_env(KAFKA_BOOTSTRAP=kafka_bootstrap))

    assert f"fixed {TAMPERED}: retention.ms {BY_HAND_MS} -> {by_name(TAMPERED).config['retention.ms']}" in fixed.stdout
    after = audit(pipeline_topics.topic_states(t.name for t in ALL_TOPICS), default_policy().erasure_max_linger)
    assert [(a.name, a.drift) for a in after if a.drift or not a.exists] == []
    dlq = next(a for a in after if a.name == TAMPERED)
    assert dlq.linger is not None and format_ms(dlq.linger.data_ms) == "8 d"
    # What remains flagged after --fix is only what the specification itself allows.
    assert sorted(a.name for a in after if not a.ok) == sorted(_beyond_bound_by_specification())
    assert fixed.returncode == (1 if _beyond_bound_by_specification() else 0), fixed.stderr

    again = run_records("topics", "audit", env=cli_env(KAFKA_BOOTSTRAP=kafka_bootstrap))
    assert "drift" not in again.stdout and "fixed" not in again.stdout
    assert again.returncode == fixed.returncode


def test_audit_against_an_unreachable_cluster_is_one_line() -> None:
    failed = run_records("topics", "audit", env=cli_env(KAFKA_BOOTSTRAP="127.0.0.1:1"))

    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: cannot list topics")

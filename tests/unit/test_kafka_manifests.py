"""The Strimzi manifests under deploy/k8s/kafka/: generated from the topic module and the
access table, committed, and read back here as Kubernetes would read them (PyYAML).

The access rules are checked on the parsed KafkaUsers, not on the table that made them,
so a rendering bug that widens a principal's rights fails here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import topics
from pipeline.topic_access import PRINCIPALS, RAW_TOPICS
from records.cli import app as records_cli
from records.kafka_manifests import KafkaTarget, manifests

KAFKA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "kafka"


def _load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KAFKA_DIR / name).read_text(encoding="utf-8")) if doc]


def _allowed(user: dict[str, Any], operation: str, topic: str) -> bool:
    """Whether the KafkaUser's ACLs allow `operation` on `topic` (literal or prefix rule)."""
    for rule in user["spec"]["authorization"]["acls"]:
        resource = rule["resource"]
        if resource["type"] != "topic" or operation not in rule["operations"]:
            continue
        if resource["patternType"] == "literal" and resource["name"] == topic:
            return True
        if resource["patternType"] == "prefix" and topic.startswith(resource["name"]):
            return True
    return False


def _users() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _load("users.yaml")}


def _topic_acls(user: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (rule["resource"]["name"], rule["resource"]["patternType"], op)
        for rule in user["spec"]["authorization"]["acls"]
        if rule["resource"]["type"] == "topic"
        for op in rule["operations"]
    }


@pytest.mark.parametrize("name", sorted(manifests()))
def test_committed_manifests_match_the_code(name: str) -> None:
    committed = (KAFKA_DIR / name).read_text(encoding="utf-8")
    assert committed == manifests()[name], (
        f"deploy/k8s/kafka/{name} drifted from the code: run `records deploy kafka-manifests --out deploy/k8s/kafka/`"
    )


def test_the_command_writes_what_is_committed(tmp_path: Path) -> None:
    result = CliRunner().invoke(records_cli, ["deploy", "kafka-manifests", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{len(topics.ALL_TOPICS)} KafkaTopics and 5 KafkaUsers" in result.output
    for name in manifests():
        assert (tmp_path / name).read_text(encoding="utf-8") == (KAFKA_DIR / name).read_text(encoding="utf-8")


def test_one_kafka_topic_per_topic_with_its_partitions_and_config() -> None:
    docs = _load("topics.yaml")
    assert all(doc["kind"] == "KafkaTopic" for doc in docs)
    by_name = {doc["spec"]["topicName"]: doc for doc in docs}
    assert set(by_name) == {spec.name for spec in topics.ALL_TOPICS}
    for spec in topics.ALL_TOPICS:
        doc = by_name[spec.name]
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == KafkaTarget().cluster
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["config"] == dict(spec.config)  # strings, as Kafka configs are


def test_one_user_per_component_with_its_own_consumer_groups() -> None:
    users = _users()
    assert set(users) == {p.name for p in PRINCIPALS}
    groups = [
        rule["resource"]["name"]
        for user in users.values()
        for rule in user["spec"]["authorization"]["acls"]
        if rule["resource"]["type"] == "group"
    ]
    assert len(groups) == len(set(groups)), "a consumer group is shared between components"
    assert {"cs-streams", "cs-clickhouse-sink", "records-dsr-status"} <= set(groups)
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        ops = {op for rule in user["spec"]["authorization"]["acls"] for op in rule["operations"]}
        assert ops <= {"Read", "Write", "Describe", "DescribeConfigs", "Create"}, (user["metadata"]["name"], ops)
        assert not any(rule["resource"]["type"] == "cluster" for rule in user["spec"]["authorization"]["acls"])


def test_only_the_streams_stage_writes_storage_commands() -> None:
    writers = {name for name, user in _users().items() if _allowed(user, "Write", topics.DSR_COMMANDS.name)}
    assert writers == {"cs-records-streams"}


def test_only_the_dpo_cli_writes_data_subject_requests() -> None:
    writers = {name for name, user in _users().items() if _allowed(user, "Write", topics.DSR.name)}
    assert writers == {"cs-records-dpo"}


def test_upstream_producers_write_the_raw_topics_and_nothing_else() -> None:
    upstream = _users()["cs-records-upstream"]
    assert _topic_acls(upstream) == {(spec.name, "literal", "Write") for spec in RAW_TOPICS}
    assert not any(rule["resource"]["type"] == "group" for rule in upstream["spec"]["authorization"]["acls"])


def test_the_dpo_cli_writes_requests_and_reads_receipts_only() -> None:
    dpo = _users()["cs-records-dpo"]
    assert _topic_acls(dpo) == {
        (topics.DSR.name, "literal", "Write"),
        (topics.DSR_RECEIPTS.name, "literal", "Read"),
    }


def test_the_sink_cannot_write_records_or_commands() -> None:
    sink = _users()["cs-records-sink"]
    writable = {spec.name for spec in topics.ALL_TOPICS if _allowed(sink, "Write", spec.name)}
    assert writable == {topics.DSR_RECEIPTS.name, topics.DLQ.name}
    assert _allowed(sink, "Read", topics.DSR_COMMANDS.name)


def test_the_retention_job_only_describes() -> None:
    retention = _users()["cs-records-retention"]
    assert {op for _, _, op in _topic_acls(retention)} == {"Describe", "DescribeConfigs"}
    assert {name for name, _, _ in _topic_acls(retention)} == {spec.name for spec in topics.ALL_TOPICS}


def test_every_topic_has_a_writer_and_personal_topics_have_no_stray_readers() -> None:
    users = _users()
    for spec in topics.ALL_TOPICS:
        assert any(_allowed(user, "Write", spec.name) for user in users.values()), spec.name
    # Raw events (identifiers in plaintext) are read by the streams stage only.
    for spec in RAW_TOPICS:
        readers = {name for name, user in users.items() if _allowed(user, "Read", spec.name)}
        assert readers == {"cs-records-streams"}, (spec.name, readers)


def test_each_k8s_workload_connects_as_its_own_component() -> None:
    """deploy/k8s: every container running a Kafka-using command sets the KafkaUser of its
    component, with the password from the Secret Strimzi creates for that user."""
    expected = {
        ("worker", "streams"): "cs-records-streams",
        ("worker", "sink"): "cs-records-sink",
        ("retention", "run"): "cs-records-retention",
        ("topics", "audit"): "cs-records-retention",
        ("report", "--json"): "cs-records-retention",
    }
    seen: set[tuple[str, str]] = set()
    users = _users()
    for path in sorted((KAFKA_DIR.parent).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            spec = (doc or {}).get("spec", {})
            pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                command = tuple(container["command"][1:3])
                env = {item["name"]: item for item in container.get("env", [])}
                assert "KAFKA_SASL_USERNAME" not in str(container.get("envFrom")), path.name
                if command not in expected:
                    assert command == ("clickhouse", "init"), (path.name, command)  # needs no Kafka
                    continue
                seen.add(command)
                user = env["KAFKA_SASL_USERNAME"]["value"]
                assert user == expected[command] and user in users, (path.name, command, user)
                secret = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert secret == {"name": user, "key": "password"}, (path.name, command)
    assert seen == set(expected)
    config = yaml.safe_load_all((KAFKA_DIR.parent / "config.yaml").read_text(encoding="utf-8"))
    assert all("KAFKA_SASL_USERNAME" not in (doc or {}).get("data", {}) for doc in config)  # no shared principal

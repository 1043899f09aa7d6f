"""Kafka admin operations, and topics as code: the plan that makes the cluster match
`pipeline/topics.py` is a pure function (`plan_topic_changes`); `ensure_topics` applies it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError
from pipeline.topics import TopicSpec

_TIMEOUT = 30.0

ChangeKind = Literal["create", "config", "partitions"]


@dataclass(frozen=True)
class TopicState:
    """What the cluster has for one topic."""

    name: str
    partitions: int
    config: Mapping[str, str]


@dataclass(frozen=True)
class TopicChange:
    """One step of a plan: create a topic, set one config key, or grow the partitions."""

    topic: str
    kind: ChangeKind
    key: str | None = None
    current: str | None = None
    desired: str | None = None

    def describe(self) -> str:
        if self.kind == "create":
            return f"{self.topic}: create with {self.desired} partitions"
        if self.kind == "partitions":
            return f"{self.topic}: partitions {self.current} -> {self.desired}"
        current = "unset" if self.current is None else self.current
        return f"{self.topic}: {self.key} {current} -> {self.desired}"


def plan_topic_changes(specs: Iterable[TopicSpec], actual: Mapping[str, TopicState]) -> list[TopicChange]:
    """What must change so that the cluster matches the specs. Partitions only grow."""
    changes: list[TopicChange] = []
    for spec in specs:
        state = actual.get(spec.name)
        if state is None:
            changes.append(TopicChange(spec.name, "create", desired=str(spec.partitions)))
            continue
        for key, value in sorted(spec.config.items()):
            if state.config.get(key) != value:
                changes.append(TopicChange(spec.name, "config", key, state.config.get(key), value))
        if state.partitions < spec.partitions:
            changes.append(TopicChange(spec.name, "partitions", None, str(state.partitions), str(spec.partitions)))
    return changes


def _error(message: str, exc: BaseException) -> KafkaClientError:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        error: KafkaError = exc.args[0]
        return KafkaClientError(f"{message}: {error.str()}", error.name())
    return KafkaClientError(f"{message}: {exc}")


def _wait_all(futures: Mapping[Any, Future[Any]], failed: str, *, ignore: int | None = None) -> None:
    """Wait for every future of one admin call, keyed by topic name or resource; the first
    failure raises as "`failed` <topic>: ...", except one with the error code `ignore`."""
    for subject, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if ignore is not None and _code(exc) == ignore:
                continue
            name = subject if isinstance(subject, str) else subject.name
            raise _error(f"{failed} {name}", exc) from exc


def _code(exc: KafkaException) -> int | None:
    return exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None


class KafkaAdmin:
    """confluent-kafka AdminClient, created on first use."""

    def __init__(self, connection: KafkaConnection, *, timeout: float = _TIMEOUT) -> None:
        # log_level 4: warnings and errors only (no info lines at shutdown).
        self._config: dict[str, str | int | float | bool] = {"log_level": 4, **connection.as_librdkafka_dict()}
        self._timeout = timeout
        self._client: AdminClient | None = None

    def close(self) -> None:
        """Drop the client (librdkafka closes its connections when it is collected)."""
        self._client = None

    @property
    def config(self) -> dict[str, str | int | float | bool]:
        return dict(self._config)

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            self._client = AdminClient(self._config)
        return self._client

    def list_topics(self) -> dict[str, int]:
        """Topic name -> partition count (internal topics excluded)."""
        try:
            metadata = self.client.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise _error("cannot list topics", exc) from exc
        return {name: len(t.partitions) for name, t in metadata.topics.items() if not name.startswith("__")}

    def describe_configs(self, topics: Sequence[str]) -> dict[str, dict[str, str]]:
        """Topic name -> every config value the broker reports (overrides and defaults)."""
        if not topics:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
        out: dict[str, dict[str, str]] = {}
        for resource, future in self.client.describe_configs(resources, request_timeout=self._timeout).items():
            try:
                entries: dict[str, ConfigEntry] = future.result()
            except KafkaException as exc:
                raise _error(f"cannot describe topic {resource.name}", exc) from exc
            out[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
        return out

    def topic_states(self, names: Iterable[str]) -> dict[str, TopicState]:
        """Partitions and configs of those of `names` that exist."""
        existing = self.list_topics()
        present = [n for n in names if n in existing]
        configs = self.describe_configs(present)
        return {n: TopicState(n, existing[n], configs.get(n, {})) for n in present}

    def create_topics(self, specs: Sequence[TopicSpec], *, replication_factor: int | None = None) -> None:
        """Create topics as specified (an existing one is left alone); returns once they are visible."""
        if not specs:
            return
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=replication_factor or -1,
                config=dict(s.config),
            )
            for s in specs
        ]
        _wait_all(
            self.client.create_topics(new, request_timeout=self._timeout),
            "cannot create topic",
            ignore=KafkaError.TOPIC_ALREADY_EXISTS,
        )
        # Metadata reaches the broker's cache a moment after the controller accepted the
        # topics; wait for it so the next look (or run) sees what was created.
        deadline = time.monotonic() + self._timeout
        wanted = {s.name for s in specs}
        while not self._ready(wanted):
            if time.monotonic() > deadline:
                raise KafkaClientError(f"created topics did not appear within {self._timeout:.0f} s")
            time.sleep(0.1)

    def _ready(self, names: set[str]) -> bool:
        """Every topic is known and each of its partitions has a leader."""
        try:
            topics = self.client.list_topics(timeout=self._timeout).topics
        except KafkaException as exc:
            raise _error("cannot list topics", exc) from exc
        return all(
            name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 and p.error is None for p in topics[name].partitions.values())
            for name in names
        )

    def alter_configs(self, topic: str, changes: Mapping[str, str]) -> None:
        """Set the given keys incrementally (other settings stay as they are)."""
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in changes.items()]
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
        _wait_all(
            self.client.incremental_alter_configs([resource], request_timeout=self._timeout), "cannot alter topic"
        )

    def grow_partitions(self, topic: str, total: int) -> None:
        """Raise the partition count of `topic` to `total` (Kafka never lowers it)."""
        new = [NewPartitions(topic, total)]
        _wait_all(self.client.create_partitions(new, request_timeout=self._timeout), "cannot add partitions to")

    def delete_topics(self, names: Sequence[str]) -> None:
        """Delete topics; missing ones are ignored."""
        if not names:
            return
        _wait_all(
            self.client.delete_topics(list(names), request_timeout=self._timeout),
            "cannot delete topic",
            ignore=KafkaError.UNKNOWN_TOPIC_OR_PART,
        )

    def apply(self, specs: Sequence[TopicSpec], changes: Sequence[TopicChange]) -> None:
        """Carry out a plan from `plan_topic_changes`."""
        by_name = {s.name: s for s in specs}
        self.create_topics([by_name[c.topic] for c in changes if c.kind == "create"])
        config_changes: dict[str, dict[str, str]] = {}
        for change in changes:
            if change.kind == "config" and change.key is not None and change.desired is not None:
                config_changes.setdefault(change.topic, {})[change.key] = change.desired
            elif change.kind == "partitions" and change.desired is not None:
                self.grow_partitions(change.topic, int(change.desired))
        for topic, values in config_changes.items():
            self.alter_configs(topic, values)


def watermarks(admin: KafkaAdmin, topics: Sequence[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) offsets of every partition of `topics`. Retries while a new topic's
    leaders are still being elected (NOT_LEADER_FOR_PARTITION for a moment after creation)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({**admin.config, "group.id": "records-watermark-probe", "enable.auto.commit": "false"})
    try:
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, partitions in admin.list_topics().items():
            if topic not in topics:
                continue
            for partition in range(partitions):
                for attempt in range(100):
                    try:
                        out[(topic, partition)] = probe.get_watermark_offsets(
                            TopicPartition(topic, partition), timeout=10
                        )
                        break
                    except KafkaException as exc:
                        if attempt == 99:
                            raise _error(f"cannot read offsets of {topic}", exc) from exc
                        time.sleep(0.1)
        return out
    finally:
        probe.close()


def group_lag(admin: KafkaAdmin, group: str, topics: Sequence[str]) -> int:
    """Messages of `topics` the consumer group has not committed yet (all partitions)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    try:
        future = admin.client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        committed = {(tp.topic, tp.partition): tp.offset for tp in future.result().topic_partitions or []}
    except KafkaException as exc:
        raise _error(f"cannot read offsets of group {group}", exc) from exc
    lag = 0
    for key, (low, high) in watermarks(admin, topics).items():
        done = committed.get(key, -1)
        lag += high - (done if done >= 0 else low)
    return lag


def ensure_topics(admin: KafkaAdmin, specs: Sequence[TopicSpec]) -> list[TopicChange]:
    """Create missing topics and align configs of existing ones; returns what changed."""
    changes = plan_topic_changes(specs, admin.topic_states(s.name for s in specs))
    admin.apply(specs, changes)
    return changes

"""The Kafka linger model and the topic audit's comparison, without a broker."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.kafka.admin import TopicState
from pipeline.topics import ALL_TOPICS, DAY_MS, HOUR_MS, by_name
from retention_jobs.linger import LingerError, format_ms, topic_linger
from retention_jobs.topics_audit import audit, describe_drift

KAFKA_NEVER = str(2**63 - 1)  # Long.MAX_VALUE, Kafka's default max.compaction.lag.ms
BOUND = timedelta(days=30)


def test_delete_topic_lingers_retention_plus_one_segment() -> None:
    linger = topic_linger({"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS), "segment.ms": str(DAY_MS)})
    assert linger.data_ms == 8 * DAY_MS
    assert linger.tombstone_ms is None
    assert linger.basis == "retention.ms 7 d + segment.ms 1 d"


def test_infinite_retention_is_unbounded() -> None:
    linger = topic_linger({"cleanup.policy": "delete", "retention.ms": "-1", "segment.ms": str(DAY_MS)})
    assert linger.data_ms is None
    assert linger.exceeds(30 * DAY_MS)


def test_compacted_topic_lingers_max_compaction_lag_plus_segment_and_tombstone_longer() -> None:
    linger = topic_linger(by_name("cs.subjects.v1").config)
    assert linger.data_ms == DAY_MS + HOUR_MS
    assert linger.tombstone_ms == 2 * DAY_MS + HOUR_MS  # + delete.retention.ms
    assert format_ms(linger.data_ms) == "1 d 1 h"


def test_compaction_without_max_lag_never_guarantees_removal() -> None:
    config = {"cleanup.policy": "compact", "segment.ms": str(HOUR_MS), "max.compaction.lag.ms": KAFKA_NEVER}
    assert topic_linger(config).data_ms is None


def test_min_compaction_lag_above_max_lag_delays_removal() -> None:
    config = {
        "cleanup.policy": "compact",
        "segment.ms": str(HOUR_MS),
        "min.compaction.lag.ms": str(3 * DAY_MS),
        "max.compaction.lag.ms": str(DAY_MS),
    }
    assert topic_linger(config).data_ms == 3 * DAY_MS + HOUR_MS


def test_compact_and_delete_take_whichever_removes_first() -> None:
    config = {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(2 * DAY_MS),
        "segment.ms": str(HOUR_MS),
        "max.compaction.lag.ms": KAFKA_NEVER,
    }
    linger = topic_linger(config)
    assert linger.data_ms == 2 * DAY_MS + HOUR_MS
    assert linger.basis.startswith("retention.ms")


def test_unreadable_setting_is_an_error() -> None:
    with pytest.raises(LingerError, match=r"retention\.ms"):
        topic_linger({"cleanup.policy": "delete", "retention.ms": "a week", "segment.ms": "1"})


def test_every_specified_topic_has_a_bounded_linger() -> None:
    for spec in ALL_TOPICS:
        linger = topic_linger(spec.config)
        assert linger.data_ms is not None, spec.name
        if spec.compacted:
            assert linger.tombstone_ms is not None, spec.name


def _live_as_specified() -> dict[str, TopicState]:
    # A broker's description carries every setting; the specified ones are what matters here.
    return {
        spec.name: TopicState(spec.name, spec.partitions, {"min.insync.replicas": "1", **spec.config})
        for spec in ALL_TOPICS
    }


def _with_config(spec_name: str, **changes: str) -> TopicState:
    spec = by_name(spec_name)
    return TopicState(
        spec.name, spec.partitions, {**spec.config, **{k.replace("_", "."): v for k, v in changes.items()}}
    )


def test_audit_of_topics_as_specified_shows_no_drift() -> None:
    audits = audit(_live_as_specified(), BOUND)
    assert [a.name for a in audits] == [spec.name for spec in ALL_TOPICS]
    assert all(a.exists and not a.drift for a in audits)
    assert all(a.ok == (not a.exceeds_bound) for a in audits)


def test_audit_catches_a_retention_changed_by_hand() -> None:
    live = _live_as_specified()
    live["cs.dlq.v1"] = _with_config("cs.dlq.v1", retention_ms=str(90 * DAY_MS))

    dlq = next(a for a in audit(live, BOUND) if a.name == "cs.dlq.v1")

    assert not dlq.ok
    assert [(d.key, d.current, d.desired) for d in dlq.drift] == [("retention.ms", str(90 * DAY_MS), str(7 * DAY_MS))]
    assert dlq.exceeds_bound  # 90 d + 1 d > 30 d
    assert dlq.problem == "drift: retention.ms; linger exceeds the erasure bound"
    assert describe_drift(dlq.drift[0]) == f"retention.ms {90 * DAY_MS} (expected {7 * DAY_MS})"


def test_audit_drift_is_the_plan_of_topics_ensure() -> None:
    live = _live_as_specified()
    live["cs.subjects.v1"] = _with_config("cs.subjects.v1", max_compaction_lag_ms=KAFKA_NEVER)
    live["cs.chat.v1"] = TopicState("cs.chat.v1", 1, dict(by_name("cs.chat.v1").config))

    audits = {a.name: a for a in audit(live, BOUND)}

    subjects = audits["cs.subjects.v1"]
    assert [c.describe() for c in subjects.drift] == [
        f"cs.subjects.v1: max.compaction.lag.ms {KAFKA_NEVER} -> {DAY_MS}"
    ]
    assert subjects.exceeds_bound and subjects.linger is not None and subjects.linger.data_ms is None
    assert [describe_drift(c) for c in audits["cs.chat.v1"].drift] == ["partitions 1 (expected 3)"]


def test_missing_topic_and_topic_without_personal_data() -> None:
    live = _live_as_specified()
    del live["cs.chat.v1"]
    receipts = by_name("cs.dsr.receipts.v1")
    live[receipts.name] = _with_config(receipts.name, max_compaction_lag_ms=KAFKA_NEVER)

    audits = {a.name: a for a in audit(live, BOUND)}

    assert not audits["cs.chat.v1"].exists and audits["cs.chat.v1"].problem == "missing"
    no_pii = audits[receipts.name]
    assert no_pii.linger is not None and no_pii.linger.data_ms is None  # unbounded, yet
    assert not no_pii.exceeds_bound  # never flagged: no personal data
    assert no_pii.drift  # still drifted from its specification


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "unbounded"),
        (30 * 60_000, "30 min"),
        (5 * HOUR_MS, "5 h"),
        (DAY_MS, "1 d"),
        (8 * DAY_MS + HOUR_MS, "8 d 1 h"),
    ],
)
def test_format_ms(ms: int | None, text: str) -> None:
    assert format_ms(ms) == text

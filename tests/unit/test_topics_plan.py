from __future__ import annotations

from pipeline import topics
from pipeline.kafka.admin import TopicState, plan_topic_changes
from pipeline.topics import ALL_TOPICS, DLQ, SUBJECTS, TopicSpec


def _state(spec: TopicSpec, **overrides: str) -> TopicState:
    return TopicState(spec.name, spec.partitions, {**spec.config, "min.insync.replicas": "1", **overrides})


def test_missing_topics_are_created() -> None:
    changes = plan_topic_changes(ALL_TOPICS, {})
    assert [c.kind for c in changes] == ["create"] * len(ALL_TOPICS)


def test_matching_topics_need_nothing_even_with_extra_settings() -> None:
    assert plan_topic_changes(ALL_TOPICS, {s.name: _state(s) for s in ALL_TOPICS}) == []


def test_drift_is_planned_back() -> None:
    actual = {s.name: _state(s) for s in ALL_TOPICS}
    actual[DLQ.name] = _state(DLQ, **{"retention.ms": "1000"})
    actual[SUBJECTS.name] = TopicState(SUBJECTS.name, 1, dict(SUBJECTS.config))
    changes = plan_topic_changes(ALL_TOPICS, actual)
    described = sorted(c.describe() for c in changes)
    assert described == [
        f"{DLQ.name}: retention.ms 1000 -> {DLQ.config['retention.ms']}",
        f"{SUBJECTS.name}: partitions 1 -> {SUBJECTS.partitions}",
    ]


def test_partitions_never_shrink() -> None:
    actual = {s.name: TopicState(s.name, s.partitions + 5, dict(s.config)) for s in ALL_TOPICS}
    assert plan_topic_changes(ALL_TOPICS, actual) == []


def test_compacted_topics_bound_their_compaction_lag() -> None:
    for spec in ALL_TOPICS:
        if spec.compacted:
            assert int(spec.config["max.compaction.lag.ms"]) <= 86_400_000
            assert int(spec.config["segment.ms"]) <= 86_400_000


def test_a_key_missing_on_the_cluster_is_set() -> None:
    config = {k: v for k, v in SUBJECTS.config.items() if k != "max.compaction.lag.ms"}
    [change] = plan_topic_changes([SUBJECTS], {SUBJECTS.name: TopicState(SUBJECTS.name, SUBJECTS.partitions, config)})
    bound = SUBJECTS.config["max.compaction.lag.ms"]
    assert change.describe() == f"{SUBJECTS.name}: max.compaction.lag.ms unset -> {bound}"


def test_the_changelogs_of_another_app_id_keep_the_specs_of_the_default_ones() -> None:
    # The streams worker creates these before faust starts (an isolated app id has none yet).
    renamed = topics.changelogs_for("cs-streams-copy")
    assert [spec.name for spec in renamed] == [
        "cs-streams-copy-consent-changelog",
        "cs-streams-copy-erasures-changelog",
        "cs-streams-copy-dsr-seen-changelog",
    ]
    for spec, default in zip(renamed, topics.STREAMS_CHANGELOGS, strict=True):
        assert (spec.partitions, dict(spec.config)) == (default.partitions, dict(default.config))
    assert topics.changelogs_for(topics.STREAMS_APP_ID) == topics.STREAMS_CHANGELOGS

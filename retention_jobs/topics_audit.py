"""`records topics audit`: every topic of pipeline/topics.py, live, against its
specification and against the policy's bound on how long erased data may linger.

The comparison and the linger are pure (`audit`); reading the live configuration and
`--fix` go through the Kafka admin adapter of pipeline/kafka (the same one `records topics
ensure` uses), so there is one way to describe and alter topics in the project.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from pipeline.config import KafkaConnection
from pipeline.exceptions import KafkaClientError
from pipeline.kafka.admin import KafkaAdmin, TopicChange, TopicState, ensure_topics, plan_topic_changes
from pipeline.policy import Policy
from pipeline.topics import ALL_TOPICS, TopicSpec
from retention_jobs.linger import Linger, LingerError, topic_linger
from retention_jobs.report_evidence import KafkaEvidence, TopicEvidence

# Reading configurations waits at most this long: an unreachable cluster makes the audit
# fail (and the report's Kafka lines "unknown") without holding them for long.
READ_TIMEOUT_S = 10.0


def describe_drift(change: TopicChange) -> str:
    """One drifted setting of a topic, for people (the topic name is shown elsewhere)."""
    if change.kind == "partitions":
        return f"partitions {change.current} (expected {change.desired})"
    return f"{change.key} {change.current if change.current is not None else 'unset'} (expected {change.desired})"


@dataclass(frozen=True)
class TopicAudit:
    spec: TopicSpec
    exists: bool
    drift: tuple[TopicChange, ...]  # what `records topics ensure` / `audit --fix` would change
    linger: Linger | None  # from the live configuration; None when the topic is missing
    bound_ms: int
    linger_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def personal_data(self) -> bool:
        return self.spec.personal_data

    @property
    def exceeds_bound(self) -> bool:
        return self.personal_data and self.linger is not None and self.linger.exceeds(self.bound_ms)

    @property
    def ok(self) -> bool:
        return self.exists and not self.drift and not self.exceeds_bound and self.linger_error is None

    @property
    def problem(self) -> str:
        """Why the topic is not ok, in a few words ('' when it is)."""
        if not self.exists:
            return "missing"
        reasons = []
        if self.drift:
            reasons.append("drift: " + ", ".join(c.key or c.kind for c in self.drift))
        if self.linger_error:
            reasons.append(self.linger_error)
        if self.exceeds_bound:
            reasons.append("linger exceeds the erasure bound")
        return "; ".join(reasons)


def audit(
    states: Mapping[str, TopicState],
    bound: timedelta,
    specs: Sequence[TopicSpec] = ALL_TOPICS,
) -> tuple[TopicAudit, ...]:
    """Judge every specified topic from the cluster's state (a topic absent from `states`
    is missing). Drift is exactly the plan `records topics ensure` would carry out."""
    bound_ms = int(bound.total_seconds() * 1000)
    plan = plan_topic_changes(specs, states)
    out = []
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            out.append(TopicAudit(spec, False, (), None, bound_ms))
            continue
        drift = tuple(c for c in plan if c.topic == spec.name)
        try:
            linger, error = topic_linger(state.config), None
        except LingerError as exc:
            linger, error = None, str(exc)
        out.append(TopicAudit(spec, True, drift, linger, bound_ms, error))
    return tuple(out)


def to_evidence(audits: Sequence[TopicAudit]) -> KafkaEvidence:
    return KafkaEvidence(
        topics=tuple(
            TopicEvidence(a.name, a.personal_data, a.exists, tuple(describe_drift(c) for c in a.drift), a.linger)
            for a in audits
        )
    )


# ---- edges: the live cluster ------------------------------------------------------------


def audit_topics(kafka: KafkaConnection, policy: Policy) -> tuple[TopicAudit, ...]:
    """Describe every specified topic on the cluster and audit it."""
    # librdkafka would log every failed connection attempt to stderr; the admin error
    # raised after the timeout says the same in one line.
    quiet = dataclasses.replace(kafka, extra={**kafka.extra, "log_level": "0"})
    admin = KafkaAdmin(quiet, timeout=READ_TIMEOUT_S)
    return audit(admin.topic_states(spec.name for spec in ALL_TOPICS), policy.erasure_max_linger)


def fix_topics(kafka: KafkaConnection) -> list[str]:
    """Align every topic with its specification (the same plan as `records topics ensure`);
    returns what was changed."""
    return [change.describe() for change in ensure_topics(KafkaAdmin(kafka), ALL_TOPICS)]


def kafka_evidence(kafka: KafkaConnection, policy: Policy) -> KafkaEvidence:
    """The report's Kafka evidence; an unreachable cluster gives a one-line reason instead."""
    try:
        return to_evidence(audit_topics(kafka, policy))
    except KafkaClientError as exc:
        return KafkaEvidence(error=f"Kafka at {kafka.bootstrap} did not answer: {exc}")

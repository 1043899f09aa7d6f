"""Pure: who may read and write which topic. One Kafka principal per component, with
the least it needs; `records deploy kafka-manifests` turns this table into Strimzi
KafkaUsers (deploy/k8s/kafka/), and tests check the rules below against it.

The rules this table keeps:
- upstream producers write the raw topics and nothing else, and read nothing;
- only the streams stage (holder of the pepper) writes cs.dsr.commands.v1: whoever can
  write there can order the sink to delete or rewrite any subject's rows;
- only the DPO CLI writes cs.dsr.v1 (requests are signed as well); it reads receipts;
- the sink reads the enriched topics, the commands and the receipts, writes receipts
  and the dead-letter topic;
- the retention job only describes topics and their configs (the audit); topic configs
  are changed by applying the KafkaTopic manifests, not by the job.
Read and Write imply Describe in Kafka's ACL model. Consumer groups are per component.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import topics
from pipeline.topics import ALL_TOPICS, STREAMS_APP_ID, TopicSpec

# Consumer groups of the components (the sink's default group, the streams app id, the
# streams stage's subject lookup and the DPO CLI's receipt reader).
SINK_GROUP = "cs-clickhouse-sink"
STREAMS_SUBJECT_LOOKUP_GROUP = "cs-streams-subject-lookup"
DPO_RECEIPTS_GROUP = "records-dsr-status"

RAW_TOPICS: tuple[TopicSpec, ...] = topics.STREAMS_INPUTS
STREAMS_CHANGELOGS = topics.STREAMS_CHANGELOGS


@dataclass(frozen=True)
class Principal:
    """One component's Kafka identity and what it may do.

    `internal_prefix`: a topic-name prefix the component owns outright (faust's changelog,
    leader and repartition topics are named after its app id); it may create, read and
    write topics under it. `describe_all`: Describe and DescribeConfigs on every topic.
    """

    name: str
    component: str
    reads: tuple[TopicSpec, ...] = ()
    writes: tuple[TopicSpec, ...] = ()
    groups: tuple[str, ...] = ()
    internal_prefix: str | None = None
    describe_all: bool = False


STREAMS = Principal(
    "cs-records-streams",
    "streams workers (`records worker streams`)",
    reads=(*RAW_TOPICS, topics.DSR, topics.SUBJECTS, *STREAMS_CHANGELOGS),
    writes=(*topics.STREAMS_OUTPUTS, topics.DSR_COMMANDS, topics.DSR_RECEIPTS, *STREAMS_CHANGELOGS),
    groups=(STREAMS_APP_ID, STREAMS_SUBJECT_LOOKUP_GROUP),
    internal_prefix=f"{STREAMS_APP_ID}-",
)
SINK = Principal(
    "cs-records-sink",
    "ClickHouse sink (`records worker sink`)",
    reads=(
        topics.CHAT_ENRICHED,
        topics.CALL_ENRICHED,
        topics.CONSENT_LEDGER,
        topics.DSR_COMMANDS,
        topics.DSR_RECEIPTS,
        topics.CONTACT_FORM_ENRICHED,
    ),
    writes=(topics.DSR_RECEIPTS, topics.DLQ),
    groups=(SINK_GROUP,),
)
RETENTION = Principal(
    "cs-records-retention",
    "retention job (`records retention run`, `records retention topics`)",
    describe_all=True,
)
DPO = Principal(
    "cs-records-dpo",
    "DPO CLI (`records dsr ...`)",
    reads=(topics.DSR_RECEIPTS,),
    writes=(topics.DSR,),
    groups=(DPO_RECEIPTS_GROUP,),
)
UPSTREAM = Principal(
    "cs-records-upstream",
    "upstream producers (web widget, myStaff app, PBX, consent banner, web contact forms)",
    writes=RAW_TOPICS,
)

PRINCIPALS: tuple[Principal, ...] = (STREAMS, SINK, RETENTION, DPO, UPSTREAM)


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule: `operation` on the resource (`kind` topic or group) named
    `name` (literal, or every name starting with it when `prefix`)."""

    kind: str
    name: str
    operation: str
    prefix: bool = False


def acls(principal: Principal, all_topics: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[Acl]:
    """The principal's allow rules, sorted and without duplicates."""
    out: set[Acl] = set()
    prefix = principal.internal_prefix
    for operation, specs in (("Read", principal.reads), ("Write", principal.writes)):
        # a topic under the owned prefix is covered by the prefix rule below
        out.update(Acl("topic", s.name, operation) for s in specs if not (prefix and s.name.startswith(prefix)))
    out.update(Acl("group", group, "Read") for group in principal.groups)
    if prefix:
        for operation in ("Create", "Read", "Write", "Describe"):
            out.add(Acl("topic", prefix, operation, prefix=True))
    if principal.describe_all:
        for spec in all_topics:
            out.update({Acl("topic", spec.name, "Describe"), Acl("topic", spec.name, "DescribeConfigs")})
    return sorted(out)


def writers(topic: TopicSpec) -> list[Principal]:
    """The principals allowed to write `topic` (by name or by an owned prefix)."""
    return [
        p
        for p in PRINCIPALS
        if topic in p.writes or (p.internal_prefix is not None and topic.name.startswith(p.internal_prefix))
    ]

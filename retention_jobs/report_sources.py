"""Pure: the report's §4 evidence, that every source of personal data the notice names
is taken in by the pipeline (its raw topic exists) and kept where the policy says (its
tables exist), with the rows each holds now.

The notice (§4 summary, "Mistä saamme tietojasi?") names the sources: a phone call, a
chat started on the web site or in the myStaff app, and a contact form
("lomakeyhteydenotto"). A fresh deployment passes with no rows; a missing topic or table
fails.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pipeline import topics
from pipeline.policy import Policy


@dataclass(frozen=True)
class Source:
    name: str
    topic: topics.TopicSpec
    record_types: tuple[str, ...]  # policy record types its events are stored as


NOTICE_SOURCES: tuple[Source, ...] = (
    Source("phone call", topics.CALL, ("call", "call_recording")),
    Source("web chat", topics.CHAT, ("chat_conversation", "chat_message")),
    Source("myStaff app chat", topics.CHAT, ("chat_conversation", "chat_message")),
    Source("contact form", topics.CONTACT_FORM, ("contact_form",)),
)


def sources_evidence(
    policy: Policy,
    tables: Collection[str],
    rows: Mapping[str, int],
    live_topics: Collection[str] | None,
) -> tuple[str, bool, tuple[str, ...]]:
    """(evidence, passed, details). `tables`: the records.* tables that exist; `rows`:
    stored rows per record type; `live_topics`: the topics the cluster has (None: Kafka
    not read, the topics are not judged)."""
    details: list[str] = []
    problems: list[str] = []
    for source in NOTICE_SOURCES:
        stored = []
        for record_type in source.record_types:
            table = policy.record(record_type).table
            if table not in tables:
                problems.append(f"{source.name}: table {table} missing")
            stored.append(f"{table} {rows.get(record_type, 0)} rows")
        if live_topics is not None and source.topic.name not in live_topics:
            problems.append(f"{source.name}: topic {source.topic.name} missing")
        details.append(f"{source.name}: {source.topic.name} -> {', '.join(stored)}")
    names = ", ".join(source.name for source in NOTICE_SOURCES)
    evidence = (
        f"{len(NOTICE_SOURCES)} sources of the notice ({names}) each have an input topic and tables"
        if not problems
        else "; ".join(problems)
    )
    return evidence, not problems, tuple(details)

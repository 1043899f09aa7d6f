"""The reconciliation's accounting over hand-made data: each outcome, missing, duplicates,
and replayed dead letters that are not duplicates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.policy import default_policy
from pipeline.retention_period import RetentionPeriod
from records.cli.reconcile_cmd import parse_since
from retention_jobs.reconcile import (
    DAY_MS,
    DEAD_LETTERED,
    QUARANTINED,
    Erasure,
    Letter,
    RawEvent,
    StoredRow,
    reconcile,
)
from retention_jobs.report import evaluate
from retention_jobs.report_evidence import Evidence, KafkaEvidence

NOW = 1_800_000_000_000
T = NOW - 1000 * DAY_MS


def event(offset: int, event_id: str | None = None, row_id: str | None = None, **kw: object) -> RawEvent:
    base: dict[str, object] = dict(
        topic="cs.call.v1",
        partition=0,
        offset=offset,
        event_id=event_id,
        schema="cs.records.CallDetailRecord" if event_id else None,
        table="calls" if event_id else None,
        row_id=row_id or event_id,
        policy_time_ms=NOW - DAY_MS,
        retention=RetentionPeriod(2, "YEAR"),
    )
    base.update(kw)
    return RawEvent(**base)  # type: ignore[arg-type]


def run(events: list[RawEvent], rows=(), letters=(), erasures=()):  # type: ignore[no-untyped-def]
    return reconcile(events, rows, letters, erasures, since_ms=T, now_ms=NOW)


def test_each_event_has_its_one_outcome() -> None:
    events = [
        event(0, "e-stored"),
        event(1, "e-stripped"),
        event(2),  # undecodable
        event(3, "e-quarantined"),
        event(4, "e-erased", subject_keys=("k1",)),
        event(5, "e-expired", policy_time_ms=NOW - 800 * DAY_MS),
        event(6, "e-old-version", row_id="call-1"),
        event(7, "e-new-version", row_id="call-1"),
    ]
    rows = [
        StoredRow("calls", "e-stored", "e-stored"),
        StoredRow("calls", "e-stripped", "e-stripped", ("answered_by_user:not_needed",)),
        StoredRow("calls", "call-1", "e-new-version"),
        StoredRow("calls", "unrelated", "unrelated"),
    ]
    letters = [
        Letter(DEAD_LETTERED, "cs.call.v1", 0, 2, "not Avro: unknown framing (first byte 0x00)", "streams"),
        Letter(QUARANTINED, "cs.call.v1", 0, 3, "notice_before_start", "streams"),
    ]
    erasures = [Erasure("k1", NOW)]
    result = run(events, rows, letters, erasures)
    outcomes = {a.event.offset: a.outcome for a in result.events}
    assert outcomes == {
        0: "stored",
        1: "stored",
        2: "dead_lettered",
        3: "quarantined",
        4: "erased",
        5: "expired",
        6: "superseded",
        7: "stored",
    }
    assert result.events[1].stripped == ("answered_by_user:not_needed",)
    assert result.events[4].places[0].detail == "erased at 2027-01-15T08:00:00+00:00"
    assert result.balanced
    assert result.stripped == 1
    assert result.summary() == (
        "8 raw events: 3 stored (1 stripped), 1 superseded, 1 quarantined, 1 dead-lettered, 1 erased, 1 expired; "
        "0 missing, 0 duplicates"
    )


def test_an_event_nowhere_is_missing() -> None:
    result = run([event(0, "e-1"), event(1)], rows=[StoredRow("calls", "e-1", "e-1")])
    assert [a.event.label() for a in result.missing] == ["cs.call.v1[0]@1"]
    assert not result.balanced
    assert result.to_dict()["missing_events"] == ["cs.call.v1[0]@1"]


def test_an_event_stored_and_dead_lettered_is_a_duplicate() -> None:
    letters = [Letter(DEAD_LETTERED, "cs.records.call.enriched.v1", 1, 9, "bad", "sink", source_event_id="e-1")]
    result = run([event(0, "e-1")], rows=[StoredRow("calls", "e-1", "e-1")], letters=letters)
    assert [a.outcome for a in result.events] == ["duplicate"]
    assert {p.outcome for p in result.duplicates[0].places} == {"stored", DEAD_LETTERED}


def test_an_event_stored_although_erased_is_a_duplicate() -> None:
    result = run(
        [event(0, "e-1", subject_keys=("k1",))],
        rows=[StoredRow("calls", "e-1", "e-1")],
        erasures=[Erasure("k1", NOW)],
    )
    assert len(result.duplicates) == 1


def test_an_event_after_its_subjects_erasure_is_new_data() -> None:
    after = event(0, "e-1", subject_keys=("k1",), policy_time_ms=NOW)
    result = run([after], erasures=[Erasure("k1", NOW - 1)])
    assert [a.outcome for a in result.events] == ["missing"]


def test_replayed_dead_letters_are_copies_not_duplicates() -> None:
    letter = Letter(DEAD_LETTERED, "cs.call.v1", 0, 0, "truncated", "streams")
    result = run([event(0)], letters=[letter, letter])
    assert [a.outcome for a in result.events] == [DEAD_LETTERED]
    assert result.letter_copies == 1
    assert result.balanced


def test_quarantined_and_dead_lettered_is_a_duplicate() -> None:
    letters = [
        Letter(DEAD_LETTERED, "cs.call.v1", 0, 0, "x", "streams"),
        Letter(QUARANTINED, "cs.call.v1", 0, 0, "y", "streams"),
    ]
    assert [a.outcome for a in run([event(0, "e-1")], letters=letters).events] == ["duplicate"]


def test_one_id_at_two_offsets_is_stored_once_and_counted_as_repeated() -> None:
    result = run([event(0, "e-1"), event(1, "e-1")], rows=[StoredRow("calls", "e-1", "e-1")])
    assert [a.outcome for a in result.events] == ["stored", "stored"]
    assert result.repeated_ids == 1


def test_since_accepts_iso_times_and_durations() -> None:
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert parse_since("15m", now) == datetime(2026, 11, 30, 7, 45, tzinfo=UTC)
    assert parse_since("2026-11-30T06:00:00", now) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    with pytest.raises(Exception, match="expected an ISO 8601 time"):
        parse_since("yesterday", now)


def _evidence(reconciliation: object) -> Evidence:
    return Evidence(
        collected_at=datetime(2026, 11, 30, tzinfo=UTC),
        storage="test",
        ages={},
        record_columns={},
        analyst_columns={},
        analyst_restriction_filter={},
        stripped={},
        consent_breaches=(),
        recordings_without_prior_notice=0,
        dsr=(),
        erasure_latency_edges_s=(60,),
        erasure_latency_histogram=(0, 0),
        erased_subjects=0,
        rows_surviving_erasure={},
        active_restrictions=0,
        kafka=KafkaEvidence(),
        reconciliation=reconciliation,  # type: ignore[arg-type]
    )


def test_the_report_gains_a_reconciliation_line_that_fails_on_a_missing_event() -> None:
    policy = default_policy()
    assert "reconciliation" not in {line.id for line in evaluate(policy, _evidence(None)).lines}
    balanced = run([event(0, "e-1")], rows=[StoredRow("calls", "e-1", "e-1")])
    line = evaluate(policy, _evidence(balanced)).line("reconciliation")
    assert line.passed and line.evidence == "1 raw events: 1 stored; 0 missing, 0 duplicates"
    line = evaluate(policy, _evidence(run([event(0, "e-1")]))).line("reconciliation")
    assert not line.passed and line.details == ("missing: e-1 (cs.call.v1[0]@0)",)

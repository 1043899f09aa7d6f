"""The compliance report's verdicts and its HTML page, from hand-made evidence (no services)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.clickhouse_ddl import table_models
from pipeline.exceptions import ConfigError
from pipeline.policy import Location, default_policy, load_policy, parse_policy
from pipeline.topics import ALL_TOPICS
from retention_jobs.linger import topic_linger
from retention_jobs.report import evaluate
from retention_jobs.report_evidence import (
    ConsentBreach,
    DsrStats,
    Evidence,
    ExportsEvidence,
    KafkaEvidence,
    RecordAges,
    RecordingBoundsEvidence,
    TopicEvidence,
    age_bin_days,
    latency_edges,
)
from retention_jobs.report_html import render_html
from tests.support.report_lines import RIGHTS_LINES

POLICY = default_policy()
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def clean_evidence() -> Evidence:
    """Evidence of a deployment that keeps every commitment."""
    models = table_models(POLICY)
    hidden = {"subject_keys", "source_event_id"}
    ages = {}
    for model in models:
        limit = model.record.retention_days
        bins = age_bin_days(limit)
        ages[model.record.record_type] = RecordAges(
            model.record.record_type, 30, 0, limit - 1.5, bins, tuple([3] * (limit // bins - 1) + [0, 0])
        )
    edges = latency_edges(POLICY.erasure_max_linger)
    return Evidence(
        collected_at=NOW,
        storage="embedded chDB at /tmp/x",
        ages=ages,
        record_columns={m.name: tuple(c.name for c in m.columns) for m in models},
        analyst_columns={
            m.name: tuple(
                c.name for c in m.columns if c.name not in hidden and c.name not in m.record.identifier_fields
            )
            for m in models
        },
        analyst_restriction_filter={m.name: m.has_subject_keys for m in models},
        stripped={
            ("chat_conversation", "email", "no_contact_consent"): 12,
            ("chat_conversation", "city", "no_cookie_analytics"): 4,
        },
        consent_breaches=tuple(
            ConsentBreach("chat_conversation", name, rule.needs or "", 0)
            for name, rule in POLICY.record("chat_conversation").fields.items()
            if rule.needs
        ),
        recordings_without_prior_notice=0,
        dsr=(
            DsrStats("ERASURE", {"COMPLETED": 5, "REJECTED": 1}, 40.0, 300.0, 400.0),
            DsrStats("ACCESS", {"COMPLETED": 2}, 10.0, 20.0, 20.0),
        ),
        erasure_latency_edges_s=edges,
        erasure_latency_histogram=(1, 4) + (0,) * (len(edges) - 1),
        erased_subjects=5,
        rows_surviving_erasure={"chat_conversation": 0, "call": 0},
        active_restrictions=1,
        kafka=KafkaEvidence(
            topics=tuple(
                TopicEvidence(t.name, t.personal_data, True, (), topic_linger({**t.config, "retention.ms": "86400000"}))
                for t in ALL_TOPICS
            )
        ),
    )


def failing(evidence: Evidence) -> list[str]:
    return [line.id for line in evaluate(POLICY, evidence).lines if not line.passed]


def test_clean_evidence_passes_every_commitment() -> None:
    report = evaluate(POLICY, clean_evidence())

    assert failing(clean_evidence()) == []
    assert report.passed
    ids = [line.id for line in report.lines]
    assert len(ids) == len(set(ids))
    assert {f"retention.{r}" for r in POLICY.records} <= set(ids)
    assert {
        "categories",
        "legal_bases",
        "consent",
        "stripped",
        "recording_notice",
        *RIGHTS_LINES,
        "access_control",
        "recipients",
        "processing_location",
        "kafka_config",
        "kafka_linger",
    } <= set(ids)
    assert "oldest of 30 rows is 178.5 d old, limit 180 d" in report.line("retention.chat_conversation").evidence
    assert "p50 40 s, p95 5 min, max 7 min" in report.line("rights.erasure").evidence


def test_json_has_a_pass_or_fail_per_commitment() -> None:
    data = json.loads(json.dumps(evaluate(POLICY, clean_evidence()).to_dict()))
    assert data["passed"] is True
    assert all(line["status"] in ("pass", "fail") for line in data["lines"])
    assert data["summary"] == {"pass": len(data["lines"]), "fail": 0}
    assert data["record_ages"]["call_recording"]["limit_days"] == 90
    assert data["kafka"]["max_linger_ms"] == 30 * 86_400_000


def test_rows_past_their_limit_fail_that_retention_line_only() -> None:
    ev = clean_evidence()
    ages = dict(ev.ages)
    ages["call_recording"] = replace(ages["call_recording"], expired_rows=2, oldest_age_days=120.0)
    report = evaluate(POLICY, replace(ev, ages=ages))
    assert [line.id for line in report.lines if not line.passed] == ["retention.call_recording"]
    assert (
        "oldest of 30 rows is 120.0 d old, limit 3 months; 2 rows past the limit"
        in report.line("retention.call_recording").evidence
    )


def test_consent_based_field_without_consent_fails() -> None:
    ev = clean_evidence()
    breaches = (*ev.consent_breaches, ConsentBreach("chat_conversation", "latitude", "geolocation", 3, withdrawn=True))
    report = evaluate(POLICY, replace(ev, consent_breaches=breaches))
    assert not report.line("consent").passed
    assert report.line("consent").details == ("chat_conversation.latitude: 3 row(s) after withdrawal of geolocation",)


def test_stripping_a_field_the_policy_does_not_name_fails() -> None:
    ev = clean_evidence()
    assert failing(replace(ev, stripped={**ev.stripped, ("call", "duration_s", "whatever"): 1})) == ["stripped"]


def test_recording_started_before_its_notice_fails() -> None:
    assert failing(replace(clean_evidence(), recordings_without_prior_notice=1)) == ["recording_notice"]


def test_failed_request_fails_its_right_and_slow_erasure_fails_erasure() -> None:
    ev = clean_evidence()
    failed = replace(ev, dsr=(*ev.dsr, DsrStats("RECTIFICATION", {"COMPLETED": 3, "FAILED": 1})))
    assert failing(failed) == ["rights.rectification"]
    slow = replace(ev, dsr=(DsrStats("ERASURE", {"COMPLETED": 1}, 1.0, 1.0, 31 * 86400.0),))
    assert failing(slow) == ["rights.erasure"]


def test_no_request_yet_is_said_plainly() -> None:
    line = evaluate(POLICY, clean_evidence()).line("rights.objection")
    assert line.passed
    assert "no request received yet" in line.evidence


def test_rows_of_erased_subjects_fail_the_erasure_proof() -> None:
    ev = replace(clean_evidence(), rows_surviving_erasure={"chat_conversation": 2, "call": 0})
    assert failing(ev) == ["erasure_proof"]
    assert evaluate(POLICY, ev).line("erasure_proof").details == ("chat_conversation: 2",)


def test_a_scoring_column_fails_no_profiling() -> None:
    ev = clean_evidence()
    columns = dict(ev.record_columns)
    columns["calls"] = (*columns["calls"], "caller_risk_score")
    assert failing(replace(ev, record_columns=columns)) == ["no_profiling"]
    assert failing(replace(ev, other_tables=("customer_profiles",))) == ["no_profiling"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"email_in_view": True}, "exposed: analyst.chat_conversations.email"),
        ({"subject_keys_in_view": True}, "exposed: analyst.calls.subject_keys"),
        ({"unfiltered": True}, "views not hiding restricted subjects: calls"),
    ],
)
def test_access_control_catches_identifiers_and_unfiltered_views(change: dict[str, bool], expected: str) -> None:
    ev = clean_evidence()
    views = dict(ev.analyst_columns)
    filters = dict(ev.analyst_restriction_filter)
    if change.get("email_in_view"):
        views["chat_conversations"] = (*views["chat_conversations"], "email")
    if change.get("subject_keys_in_view"):
        views["calls"] = (*views["calls"], "subject_keys")
    if change.get("unfiltered"):
        filters["calls"] = False
    report = evaluate(POLICY, replace(ev, analyst_columns=views, analyst_restriction_filter=filters))
    assert not report.line("access_control").passed
    assert expected in report.line("access_control").evidence


def test_unreachable_kafka_makes_the_kafka_lines_unknown_and_failed() -> None:
    ev = replace(clean_evidence(), kafka=KafkaEvidence(error="cannot reach Kafka at 127.0.0.1:1: timed out"))
    report = evaluate(POLICY, ev)
    assert failing(ev) == ["kafka_config", "kafka_linger"]
    assert report.line("kafka_linger").evidence == "unknown: cannot reach Kafka at 127.0.0.1:1: timed out"


def test_topic_lingering_past_the_bound_or_drifted_fails() -> None:
    ev = clean_evidence()
    topics = list(ev.kafka.topics)
    dlq = next(i for i, t in enumerate(topics) if t.name == "cs.dlq.v1")
    config = {"cleanup.policy": "delete", "retention.ms": str(90 * 86_400_000), "segment.ms": "86400000"}
    topics[dlq] = replace(
        topics[dlq], drift=("retention.ms 7776000000 (expected 604800000)",), linger=topic_linger(config)
    )
    report = evaluate(POLICY, replace(ev, kafka=KafkaEvidence(topics=tuple(topics))))
    assert [line.id for line in report.lines if not line.passed] == ["kafka_config", "kafka_linger"]
    assert "cs.dlq.v1 91 d" in report.line("kafka_linger").evidence


def test_html_is_self_contained_with_one_age_chart_per_record_type() -> None:
    page = render_html(evaluate(POLICY, clean_evidence()))

    assert page.startswith("<!DOCTYPE html>")
    for record_type in POLICY.records:
        assert len(re.findall(rf'<svg class="chart age-chart age-{record_type}"', page)) == 1
    assert page.count('class="chart latency-chart"') == 1
    assert page.count('class="chart linger-chart"') == 1
    assert page.count('<tr class="line pass"') == len(evaluate(POLICY, clean_evidence()).lines)
    assert_self_contained(page)


def assert_self_contained(page: str) -> None:
    """Nothing the browser would fetch: no URL, no script, no external reference."""
    lowered = page.lower()
    for needle in ("http://", "https://", "src=", "href=", "<script", "<link", "@import", "url(", "<iframe"):
        assert needle not in lowered, needle


def test_html_escapes_evidence_text() -> None:
    ev = replace(clean_evidence(), storage="<b>x</b>")
    page = render_html(evaluate(POLICY, ev))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_latency_edges_end_at_the_policy_bound() -> None:
    assert latency_edges(timedelta(days=30))[-1] == 30 * 86400
    assert latency_edges(timedelta(hours=2)) == (60, 600, 3600, 7200)


# ---- notice §6 (recipients) and §7 (processing location) -------------------------------


def _with_location(location: Location) -> Any:
    processing = replace(POLICY.processing, locations=(*POLICY.processing.locations, location))
    return replace(POLICY, processing=processing)


def test_every_declared_location_of_the_shipped_policy_is_in_the_eu_eea() -> None:
    line = evaluate(POLICY, clean_evidence()).line("processing_location")
    assert line.passed, line.evidence
    assert {loc.role for loc in POLICY.processing.locations} == {"store", "processor", "recipient"}
    assert len(line.details) == len(POLICY.processing.locations)


def test_a_processor_outside_the_eu_eea_fails_without_a_safeguard_and_passes_with_one() -> None:
    outside = Location("transcription service", "processor", "US")
    failing = evaluate(_with_location(outside), clean_evidence()).line("processing_location")
    assert not failing.passed
    assert "1 of them without a safeguard" in failing.evidence
    assert any("transcription service: US (outside the EU/EEA; safeguard: none)" in d for d in failing.details)

    safeguarded = replace(outside, safeguard="standard contractual clauses 2021/914, module 2")
    assert evaluate(_with_location(safeguarded), clean_evidence()).line("processing_location").passed


def test_a_role_without_any_declared_location_fails() -> None:
    stores_only = tuple(loc for loc in POLICY.processing.locations if loc.role == "store")
    policy = replace(POLICY, processing=replace(POLICY.processing, locations=stores_only))
    line = evaluate(policy, clean_evidence()).line("processing_location")
    assert not line.passed
    assert "no declared location for: processor, recipient" in line.evidence


def test_a_location_needs_a_known_role_and_a_country_code(tmp_path: Path) -> None:
    source = (Path(__file__).resolve().parents[2] / "pipeline" / "policy.toml").read_text()
    bad = source.replace('role = "processor"', 'role = "vendor"', 1)
    path = tmp_path / "policy.toml"
    path.write_text(bad)
    with pytest.raises(ConfigError, match="role must be one of"):
        load_policy(path)
    with pytest.raises(ConfigError, match="ISO 3166-1 alpha-2"):
        raw = tomllib.loads(source)
        raw["processing"]["locations"][0]["country"] = "Finland"
        parse_policy(raw)


def test_recipients_line_fails_when_an_analyst_view_carries_an_identifier() -> None:
    ev = clean_evidence()
    view, columns = next(iter(ev.analyst_columns.items()))
    leaked = replace(ev, analyst_columns={**ev.analyst_columns, view: (*columns, "subject_keys")})
    assert evaluate(POLICY, ev).line("recipients").passed
    line = evaluate(POLICY, leaked).line("recipients")
    assert not line.passed
    assert f"exposed: analyst.{view}.subject_keys" in line.details


# ---- access exports expire (issue 11) ----------------------------------------------------


def test_exports_past_their_expiry_or_readable_by_others_fail_their_line() -> None:
    ok = ExportsEvidence(30, held=2, past_expiry=0, not_private=0, directory_private=True)
    line = evaluate(POLICY, replace(clean_evidence(), exports=ok)).line("exports_expire")
    assert line.passed
    assert line.evidence == "2 export file(s) held, 0 older than 30 d; readable by their owner only"

    stale = evaluate(POLICY, replace(clean_evidence(), exports=replace(ok, past_expiry=1))).line("exports_expire")
    assert not stale.passed and "1 older than 30 d" in stale.evidence
    open_file = evaluate(POLICY, replace(clean_evidence(), exports=replace(ok, not_private=1))).line("exports_expire")
    assert not open_file.passed and "1 file(s) readable by others" in open_file.evidence


def test_the_exports_line_is_left_out_without_exports_evidence() -> None:
    assert "exports_expire" not in {line.id for line in evaluate(POLICY, clean_evidence()).lines}


def test_the_identity_verification_line_counts_methods_and_fails_without_one() -> None:
    """Notice §9a: each executed request records how the requester's identity was verified."""
    none_yet = evaluate(POLICY, clean_evidence()).line("rights.identity_verified")
    assert none_yet.passed and "no request executed yet" in none_yet.evidence
    counted = replace(clean_evidence(), identity_verification={"IN_PERSON": 2, "STRONG_ELECTRONIC_ID": 3})
    line = evaluate(POLICY, counted).line("rights.identity_verified")
    assert (line.notice, line.passed) == ("§9a", True)
    assert line.evidence == "5 executed request(s): in_person 2, strong_electronic_id 3; 0 without one (must be 0)"
    lacking = replace(clean_evidence(), identity_verification={"IN_PERSON": 2, "": 1})
    report = evaluate(POLICY, lacking)
    assert [line.id for line in report.lines if not line.passed] == ["rights.identity_verified"]
    assert "1 without one" in report.line("rights.identity_verified").evidence


def test_the_recording_bounds_line_counts_held_recordings_by_reason() -> None:
    """Notice §5: recordings outside their call are held; the sink checks every one in time."""
    assert "recording_bounds" not in {line.id for line in evaluate(POLICY, clean_evidence()).lines}
    checked = RecordingBoundsEvidence({"within": 40, "started_before_answer": 2, "call_unknown": 1}, 0, 0)
    line = evaluate(POLICY, replace(clean_evidence(), recording_bounds=checked)).line("recording_bounds")
    assert (line.notice, line.passed) == ("§5", True)
    assert "43 recordings checked against their calls: 40 within; held: call_unknown 1, started_before_answer 2" in (
        line.evidence
    )
    for late in (RecordingBoundsEvidence({"within": 1}, 3, 0), RecordingBoundsEvidence({"within": 1}, 0, 1)):
        assert not evaluate(POLICY, replace(clean_evidence(), recording_bounds=late)).line("recording_bounds").passed

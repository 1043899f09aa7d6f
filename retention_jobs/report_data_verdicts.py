"""The compliance report's verdicts on what is held: sources, categories, legal bases,
consent, stripped fields, recordings, retention, the rights of notice §9, and how long
erased data can linger in Kafka. Pure: one function per commitment, evidence in, one
`ReportLine` out; a line fails when its evidence shows a breach or could not be collected."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from pipeline.policy import Policy, RecordPolicy
from retention_jobs.linger import format_ms
from retention_jobs.reconcile import Reconciliation, first
from retention_jobs.report_evidence import Evidence, RecordingBoundsEvidence, ReportLine
from retention_jobs.report_sources import sources_evidence


def reconciliation_line(result: Reconciliation) -> ReportLine:
    """Nothing lost, nothing twice: every raw event of the window in exactly one place."""
    details = tuple(
        [f"missing: {label}" for label in first(result.missing)]
        + [f"in two places: {label}" for label in first(result.duplicates)]
    )
    return ReportLine(
        "reconciliation",
        "§8",
        "every raw event is accounted for: stored, stripped, quarantined, dead-lettered, erased or expired",
        result.summary(),
        result.balanced,
        details,
    )


def sources_line(policy: Policy, ev: Evidence) -> ReportLine:
    """Notice §4: every source it names is taken in and stored (retention_jobs/report_sources.py)."""
    live = None if ev.kafka.error else {t.name for t in ev.kafka.topics if t.exists}
    rows = {record_type: ages.rows for record_type, ages in ev.ages.items()}
    evidence, passed, details = sources_evidence(policy, ev.record_columns, rows, live)
    commitment = "every source the notice names (phone, web chat, myStaff app, contact form) is taken in and stored"
    return ReportLine("sources", "§4", commitment, evidence, passed, details)


def categories_line(policy: Policy, ev: Evidence) -> ReportLine:
    missing: list[str] = []
    categories: Counter[str] = Counter()
    fields = 0
    for record in policy.records.values():
        columns = set(ev.record_columns.get(record.table, ()))
        for rule in record.fields.values():
            fields += 1
            categories[rule.category] += 1
            if rule.name not in columns:
                missing.append(f"{record.table}.{rule.name}")
    tables = [r.table for r in policy.records.values()]
    absent = [t for t in tables if t not in ev.record_columns]
    passed = not missing and not absent
    evidence = (
        f"{fields} policy fields in {len(categories)} categories map to columns of {len(tables)} tables"
        if passed
        else f"storage does not match the policy: missing tables {absent or 'none'}, "
        f"missing columns {missing or 'none'}"
    )
    details = tuple(f"{category}: {n} field(s)" for category, n in sorted(categories.items()))
    return ReportLine(
        "categories", "§5", "only the data categories of the notice are stored", evidence, passed, details
    )


def legal_bases_line(policy: Policy) -> ReportLine:
    bases = Counter(rule.basis for r in policy.records.values() for rule in r.fields.values())
    foreign = sorted(set(bases) - set(policy.notice.legal_bases))
    passed = not foreign
    evidence = (
        f"{sum(bases.values())} fields, each with a basis of the notice ("
        + ", ".join(f"{b} {n}" for b, n in sorted(bases.items()))
        + f"); purposes: {'; '.join(policy.notice.purposes)}"
    )
    if foreign:
        evidence = f"fields with a basis the notice does not list: {', '.join(foreign)}"
    return ReportLine(
        "legal_bases", "§3", "every stored field has a purpose and legal basis of the notice", evidence, passed
    )


def consent_line(ev: Evidence) -> ReportLine:
    breaches = [b for b in ev.consent_breaches if b.rows]
    checked = len(ev.consent_breaches)
    total = sum(b.rows for b in breaches)
    details = tuple(
        f"{b.record_type}.{b.field}: {b.rows} row(s) {'after withdrawal of' if b.withdrawn else 'without'} {b.needs}"
        for b in breaches
    )
    evidence = (
        f"{total} rows hold a consent-based field without its consent, or after it was withdrawn "
        f"(must be 0; {checked} field checks)"
    )
    return ReportLine(
        "consent",
        "§5, §3",
        "consent-based data (contact details, cookie-derived data, precise location) is stored only with its consent",
        evidence,
        total == 0 and checked > 0,
        details,
    )


def stripped_line(policy: Policy, ev: Evidence) -> ReportLine:
    by_reason: Counter[str] = Counter()
    unknown: list[str] = []
    for (record_type, field_name, reason), rows in ev.stripped.items():
        by_reason[reason] += rows
        record = policy.records.get(record_type)
        if record is None or field_name not in record.fields:
            unknown.append(f"{record_type}.{field_name}:{reason}")
    evidence = (
        ", ".join(f"{reason} {rows}" for reason, rows in by_reason.most_common())
        if by_reason
        else "no field stripped so far"
    )
    if unknown:
        evidence += f"; stripped fields the policy does not name: {', '.join(sorted(unknown))}"
    details = tuple(f"{rt}.{f}:{r} {n}" for (rt, f, r), n in sorted(ev.stripped.items()))
    return ReportLine(
        "stripped", "§5", "fields without their consent are stripped (by reason)", evidence, not unknown, details
    )


def recording_notice_line(ev: Evidence) -> ReportLine:
    n = ev.recordings_without_prior_notice
    return ReportLine(
        "recording_notice",
        "§5",
        "a call recording is announced before it starts",
        f"{n} stored recordings started before their notice was played (must be 0)",
        n == 0,
    )


def recording_bounds_line(ev: RecordingBoundsEvidence) -> ReportLine:
    within = ev.verdicts.get("within", 0)
    held = {reason: n for reason, n in sorted(ev.verdicts.items()) if reason != "within" and n}
    shown = ", ".join(f"{reason} {n}" for reason, n in held.items()) or "none"
    evidence = (
        f"{within + sum(held.values())} recordings checked against their calls: {within} within; held: {shown}; "
        f"{ev.overdue} unchecked past the grace period, {ev.misjudged} shown outside their call (both must be 0)"
    )
    return ReportLine(
        "recording_bounds",
        "§5",
        "a call recording starts when the call is answered and ends at hang-up; others are held with the reason",
        evidence,
        ev.overdue == 0 and ev.misjudged == 0,
    )


def retention_line(record: RecordPolicy, ev: Evidence) -> ReportLine:
    """Notice §8, or the controller's own limit where the notice states none (the line
    says which: `retention_set_by` in the policy)."""
    ages = ev.ages.get(record.record_type)
    commitment = record.description
    by_controller = record.retention_set_by == "controller"
    source = "controller" if by_controller else "§8"
    limit = f"limit {record.period.label}"
    if by_controller:
        limit += " (set by the controller; the notice states none)"
    if ages is None:
        return ReportLine(f"retention.{record.record_type}", source, commitment, "unknown: table not read", False)
    if ages.rows == 0:
        evidence = f"no rows stored ({limit})"
    else:
        oldest = ages.oldest_age_days or 0.0
        evidence = f"oldest of {ages.rows} rows is {oldest:.1f} d old, {limit}"
        if ages.expired_rows:
            evidence += f"; {ages.expired_rows} rows past the limit"
    return ReportLine(f"retention.{record.record_type}", source, commitment, evidence, ages.expired_rows == 0)


def right_line(right_id: str, text: str, types: Sequence[str], policy: Policy, ev: Evidence) -> ReportLine:
    stats = [s for s in ev.dsr if s.request_type in types]
    total = sum(s.total for s in stats)
    status: Counter[str] = Counter()
    for s in stats:
        status.update(s.by_status)
    failed = status.get("FAILED", 0)
    parts = [f"{total} request(s)" + (": " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())) if total else "")]
    for s in stats:
        if s.p50_s is not None:
            parts.append(f"{s.request_type} latency p50 {_secs(s.p50_s)}, p95 {_secs(s.p95_s)}, max {_secs(s.max_s)}")
    passed = failed == 0
    if right_id == "erasure":
        bound = policy.erasure_max_linger.total_seconds()
        slow = [s for s in stats if s.max_s is not None and s.max_s > bound]
        parts.append(f"bound {_secs(bound)}")
        passed = passed and not slow
    if total == 0:
        parts.append("no request received yet: path not exercised in this deployment")
    return ReportLine(f"rights.{right_id}", "§9", text, "; ".join(parts), passed)


def identity_verified_line(ev: Evidence) -> ReportLine:
    """Notice §9a: the requester proves their identity (in person or strong electronic
    identification) before a request is executed; each executed request records how."""
    counts = dict(ev.identity_verification)
    lacking = counts.pop("", 0)
    total = lacking + sum(counts.values())
    methods = ", ".join(f"{method.lower()} {n}" for method, n in sorted(counts.items()))
    evidence = (
        f"{total} executed request(s): {methods or 'none with a method'}; {lacking} without one (must be 0)"
        if total
        else "no request executed yet: path not exercised in this deployment"
    )
    return ReportLine(
        "rights.identity_verified",
        "§9a",
        "each data-subject request records how the requester's identity was verified",
        evidence,
        lacking == 0,
    )


def erasure_proof_line(ev: Evidence) -> ReportLine:
    surviving = {k: v for k, v in ev.rows_surviving_erasure.items() if v}
    total = sum(surviving.values())
    evidence = f"{ev.erased_subjects} erased subject key(s); {total} rows from before their erasure remain (must be 0)"
    details = tuple(f"{record_type}: {n}" for record_type, n in sorted(surviving.items()))
    return ReportLine(
        "erasure_proof", "§9", "an erased subject is gone from every ClickHouse table", evidence, total == 0, details
    )


def kafka_config_line(ev: Evidence) -> ReportLine:
    commitment = "every Kafka topic is configured as pipeline/topics.py says"
    if ev.kafka.error:
        return ReportLine("kafka_config", "§8, §9", commitment, f"unknown: {ev.kafka.error}", False)
    missing = [t.name for t in ev.kafka.topics if not t.exists]
    drifted = [t for t in ev.kafka.topics if t.drift]
    details = tuple(f"{t.name}: {d}" for t in drifted for d in t.drift) + tuple(f"{n}: missing" for n in missing)
    passed = not missing and not drifted and bool(ev.kafka.topics)
    evidence = (
        f"{len(ev.kafka.topics)} topics match their specification"
        if passed
        else f"{len(drifted)} topic(s) drifted, {len(missing)} missing (`records topics audit --fix` aligns them)"
    )
    return ReportLine("kafka_config", "§8, §9", commitment, evidence, passed, details)


def kafka_linger_line(policy: Policy, ev: Evidence) -> ReportLine:
    bound_ms = _ms(policy.erasure_max_linger)
    commitment = f"erased data leaves every Kafka topic within {format_ms(bound_ms)}"
    if ev.kafka.error:
        return ReportLine("kafka_linger", "§9", commitment, f"unknown: {ev.kafka.error}", False)
    measured = [(t, t.linger) for t in ev.kafka.topics if t.linger is not None]
    personal = [(t, linger) for t, linger in measured if t.personal_data]
    over = [(t, linger) for t, linger in personal if linger.exceeds(bound_ms)]
    details = tuple(
        f"{t.name}: {format_ms(linger.data_ms)} ({linger.basis})"
        + ("" if t.personal_data else ", no personal data")
        + (" EXCEEDS" if t.personal_data and linger.exceeds(bound_ms) else "")
        for t, linger in measured
    )
    if not personal:
        evidence = "no topic with personal data found"
    elif over:
        evidence = (
            f"{len(over)} of {len(personal)} personal-data topics can keep erased data longer than "
            f"{format_ms(bound_ms)}: " + ", ".join(f"{t.name} {format_ms(linger.data_ms)}" for t, linger in over)
        )
    else:
        worst, linger = max(personal, key=lambda pair: pair[1].data_ms or 0)
        evidence = (
            f"worst case {format_ms(linger.data_ms)} ({worst.name}) over {len(personal)} personal-data topics, "
            f"bound {format_ms(bound_ms)}"
        )
    return ReportLine("kafka_linger", "§9", commitment, evidence, bool(personal) and not over, details)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else format_ms(round(seconds * 1000))

"""The compliance report, as a pure function: policy + collected evidence -> one line per
commitment of the privacy notice, each with its live evidence and pass/fail.

Collecting the evidence (ClickHouse queries, Kafka admin calls) lives in
`report_collect.py`; rendering in `report_html.py` and the CLI. Nothing here does I/O, so
every verdict is unit-tested with hand-made evidence.

A line fails when its evidence shows a breach, and also when the evidence could not be
collected (e.g. Kafka unreachable): an unproven commitment is not a kept one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.clickhouse_ddl import ANALYST_DB, ANALYST_ROLE, access_statements
from pipeline.policy import Policy, RecordPolicy
from retention_jobs.linger import Linger, format_ms
from retention_jobs.reconcile import Reconciliation, first
from retention_jobs.report_sources import sources_evidence

# Columns that link a person across records: never in an analyst view (besides the policy's
# direct identifiers).
PSEUDONYMOUS_COLUMNS = ("subject_keys",)
# Names that would betray scoring or profiling of individuals (notice §12).
PROFILING_NAME = re.compile(r"score|profil|propensit|rating|churn|risk", re.IGNORECASE)
# Erasure latency chart buckets: upper edges in seconds, cut at the policy's bound.
_LATENCY_STEPS_S = (60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)

# The rights of notice §9 and the request types (DsrReceipt.request_type) that serve them.
RIGHTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("access", "access (Art. 15): export everything held about a subject", ("ACCESS",)),
    ("rectification", "rectification (Art. 16): every store shows the corrected value", ("RECTIFICATION",)),
    ("erasure", "erasure (Art. 17): the subject is removed from every store", ("ERASURE",)),
    ("restriction", "restriction (Art. 18): data kept but hidden from analysis", ("RESTRICTION", "RESTRICTION_LIFTED")),
    ("objection", "objection (Art. 21): processing on legitimate interest stops", ("OBJECTION",)),
    ("portability", "portability (Art. 20): the subject's data machine-readable (the access export)", ("ACCESS",)),
    ("consent_withdrawal", "withdraw consent (Art. 7(3)): consent-based data stops", ("CONSENT_WITHDRAWAL",)),
)


def latency_edges(bound: timedelta) -> tuple[int, ...]:
    """Upper edges (seconds) of the erasure latency buckets; the last edge is the policy's
    bound, and one more open bucket holds everything slower than it."""
    bound_s = int(bound.total_seconds())
    return (*(e for e in _LATENCY_STEPS_S if e < bound_s), bound_s)


def age_bin_days(limit_days: int) -> int:
    """Width of one bar of a record type's age chart: about twelve bars up to the limit."""
    return max(1, math.ceil(limit_days / 12))


# ---- evidence: what the collectors hand in ---------------------------------------------


@dataclass(frozen=True)
class RecordAges:
    """Stored rows of one record type, by age."""

    record_type: str
    rows: int
    expired_rows: int  # rows older than the policy limit
    oldest_age_days: float | None  # None: no rows
    bin_days: int
    histogram: tuple[int, ...]  # rows per age bin [i*bin_days, (i+1)*bin_days)


@dataclass(frozen=True)
class ConsentBreach:
    """Rows holding a consent-based field although its consent was not given with the
    record (`withdrawn` False) or was withdrawn later (`withdrawn` True)."""

    record_type: str
    field: str
    needs: str
    rows: int
    withdrawn: bool = False


@dataclass(frozen=True)
class DsrStats:
    """Receipts of one request type."""

    request_type: str
    by_status: Mapping[str, int]
    p50_s: float | None = None  # latency requested_at -> completed_at of COMPLETED ones
    p95_s: float | None = None
    max_s: float | None = None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class TopicEvidence:
    name: str
    personal_data: bool
    exists: bool
    drift: tuple[str, ...] = ()  # "retention.ms: 604800000 expected, 86400000 live"
    linger: Linger | None = None  # from the live configuration; None when missing


@dataclass(frozen=True)
class KafkaEvidence:
    topics: tuple[TopicEvidence, ...] = ()
    error: str | None = None  # one line: why Kafka could not be asked


@dataclass(frozen=True)
class ExportsEvidence:
    """Access-request exports on the data directory (pipeline/exports.py), counts only."""

    retention_days: int
    held: int
    past_expiry: int
    not_private: int
    directory_private: bool


@dataclass(frozen=True)
class AccessEvidence:
    """How the embedded query endpoint is guarded (notice §13); see access_audit.py."""

    users_by_role: Mapping[str, int]  # personal users per role
    anonymous_probe: str  # what an unauthenticated request to the live endpoint got, or why none was sent
    anonymous_refused: bool  # the live endpoint refused it, or no endpoint runs (it always requires a user)
    log_entries: int | None  # None: no access log file
    log_accepted: int = 0  # entries of queries that ran
    log_users: int = 0  # users whose queries ran
    log_private: bool = False  # the log file is readable by its owner only
    last_access: str | None = None


@dataclass(frozen=True)
class RecordingBoundsEvidence:
    """Stored call recordings against their calls (notice §5, pipeline/recording_bounds.py)."""

    verdicts: Mapping[str, int]  # verdict -> recordings (within, or the reason held)
    overdue: int  # recordings still unchecked past the grace period plus an hour
    misjudged: int  # recordings shown as within although outside their stored call


@dataclass(frozen=True)
class Evidence:
    collected_at: datetime
    storage: str  # where the ClickHouse evidence came from (no credentials)
    ages: Mapping[str, RecordAges]
    record_columns: Mapping[str, tuple[str, ...]]  # records.<table> -> its columns
    analyst_columns: Mapping[str, tuple[str, ...]]  # analyst.<view> -> its columns
    analyst_restriction_filter: Mapping[str, bool]  # analyst.<view> hides restricted subjects
    stripped: Mapping[tuple[str, str, str], int]  # (record_type, field, reason) -> rows
    consent_breaches: tuple[ConsentBreach, ...]
    recordings_without_prior_notice: int
    dsr: tuple[DsrStats, ...]
    erasure_latency_edges_s: tuple[int, ...]  # see latency_edges()
    erasure_latency_histogram: tuple[int, ...]  # one bucket per edge, plus one past the last
    erased_subjects: int
    rows_surviving_erasure: Mapping[str, int]  # record_type -> rows older than the erasure
    active_restrictions: int
    kafka: KafkaEvidence
    other_tables: tuple[str, ...] = ()  # every other table/view name of both databases
    access: AccessEvidence | None = None  # embedded mode; a server keeps its own users and grants
    exports: ExportsEvidence | None = None  # embedded mode: the sink writes exports to its data directory
    # `records report --since T`: where every raw event of the window went (reconcile.py)
    reconciliation: Reconciliation | None = None
    # executed requests by how the requester's identity was verified ("": none recorded)
    identity_verification: Mapping[str, int] = field(default_factory=dict)
    recording_bounds: RecordingBoundsEvidence | None = None  # None: no recordings table


# ---- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    id: str
    notice: str  # where the commitment comes from, e.g. "§8"
    commitment: str
    evidence: str
    passed: bool
    details: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    storage: str
    lines: tuple[ReportLine, ...]
    evidence: Evidence = field(repr=False)
    policy: Policy = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(line.passed for line in self.lines)

    def line(self, line_id: str) -> ReportLine:
        return next(line for line in self.lines if line.id == line_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: verdicts plus the data behind the charts."""
        ev = self.evidence
        return {
            "generated_at": self.generated_at.isoformat(),
            "storage": self.storage,
            "passed": self.passed,
            "summary": {
                "pass": sum(1 for line in self.lines if line.passed),
                "fail": sum(1 for line in self.lines if not line.passed),
            },
            "lines": [
                {
                    "id": line.id,
                    "notice": line.notice,
                    "commitment": line.commitment,
                    "status": line.status,
                    "passed": line.passed,
                    "evidence": line.evidence,
                    "details": list(line.details),
                }
                for line in self.lines
            ],
            "record_ages": {
                record_type: {
                    "limit": self.policy.record(record_type).period.label,
                    "limit_days": self.policy.record(record_type).retention_days,
                    "limit_set_by": self.policy.record(record_type).retention_set_by,
                    "rows": ages.rows,
                    "expired_rows": ages.expired_rows,
                    "oldest_age_days": ages.oldest_age_days,
                    "bin_days": ages.bin_days,
                    "histogram": list(ages.histogram),
                }
                for record_type, ages in ev.ages.items()
            },
            "dsr": [
                {
                    "request_type": s.request_type,
                    "by_status": dict(s.by_status),
                    "latency_p50_s": s.p50_s,
                    "latency_p95_s": s.p95_s,
                    "latency_max_s": s.max_s,
                }
                for s in ev.dsr
            ],
            "erasure_latency": {
                "bucket_upper_edges_s": list(ev.erasure_latency_edges_s),
                "counts": list(ev.erasure_latency_histogram),
            },
            "kafka": {
                "error": ev.kafka.error,
                "max_linger_ms": _ms(self.policy.erasure_max_linger),
                "topics": [
                    {
                        "name": t.name,
                        "personal_data": t.personal_data,
                        "exists": t.exists,
                        "drift": list(t.drift),
                        "linger_ms": t.linger.data_ms if t.linger else None,
                        "tombstone_linger_ms": t.linger.tombstone_ms if t.linger else None,
                        "linger_basis": t.linger.basis if t.linger else None,
                    }
                    for t in ev.kafka.topics
                ],
            },
        }


def evaluate(policy: Policy, evidence: Evidence) -> Report:
    """Judge every commitment from the evidence."""
    lines: list[ReportLine] = [
        _sources(policy, evidence),
        _categories(policy, evidence),
        _legal_bases(policy),
        _consent(evidence),
        _stripped(policy, evidence),
    ]
    if any("recording_notice_before_start" in r.requires for r in policy.records.values()):
        lines.append(_recording_notice(evidence))
    if evidence.recording_bounds is not None:
        lines.append(_recording_bounds(evidence.recording_bounds))
    lines.extend(_retention(record, evidence) for record in policy.records.values())
    lines.extend(_right(right_id, text, types, policy, evidence) for right_id, text, types in RIGHTS)
    lines.append(_erasure_proof(evidence))
    lines.append(_identity_verified(evidence))
    lines.append(_no_profiling(policy, evidence))
    lines.append(_access_control(policy, evidence))
    lines.append(_recipients(policy, evidence))
    lines.append(_processing_location(policy))
    if evidence.access is not None:
        lines.extend(_personal_access(evidence.access))
    if evidence.exports is not None:
        lines.append(_exports_expire(evidence.exports))
    lines.append(_kafka_config(evidence))
    lines.append(_kafka_linger(policy, evidence))
    if evidence.reconciliation is not None:
        lines.append(_reconciliation(evidence.reconciliation))
    return Report(evidence.collected_at, evidence.storage, tuple(lines), evidence, policy)


# ---- one function per commitment -----------------------------------------------------


def _reconciliation(result: Reconciliation) -> ReportLine:
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


def _sources(policy: Policy, ev: Evidence) -> ReportLine:
    """Notice §4: every source it names is taken in and stored (retention_jobs/report_sources.py)."""
    live = None if ev.kafka.error else {t.name for t in ev.kafka.topics if t.exists}
    rows = {record_type: ages.rows for record_type, ages in ev.ages.items()}
    evidence, passed, details = sources_evidence(policy, ev.record_columns, rows, live)
    commitment = "every source the notice names (phone, web chat, myStaff app, contact form) is taken in and stored"
    return ReportLine("sources", "§4", commitment, evidence, passed, details)


def _categories(policy: Policy, ev: Evidence) -> ReportLine:
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


def _legal_bases(policy: Policy) -> ReportLine:
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


def _consent(ev: Evidence) -> ReportLine:
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


def _stripped(policy: Policy, ev: Evidence) -> ReportLine:
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


def _recording_notice(ev: Evidence) -> ReportLine:
    n = ev.recordings_without_prior_notice
    return ReportLine(
        "recording_notice",
        "§5",
        "a call recording is announced before it starts",
        f"{n} stored recordings started before their notice was played (must be 0)",
        n == 0,
    )


def _recording_bounds(ev: RecordingBoundsEvidence) -> ReportLine:
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


def _retention(record: RecordPolicy, ev: Evidence) -> ReportLine:
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


def _right(right_id: str, text: str, types: Sequence[str], policy: Policy, ev: Evidence) -> ReportLine:
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


def _identity_verified(ev: Evidence) -> ReportLine:
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


def _erasure_proof(ev: Evidence) -> ReportLine:
    surviving = {k: v for k, v in ev.rows_surviving_erasure.items() if v}
    total = sum(surviving.values())
    evidence = f"{ev.erased_subjects} erased subject key(s); {total} rows from before their erasure remain (must be 0)"
    details = tuple(f"{record_type}: {n}" for record_type, n in sorted(surviving.items()))
    return ReportLine(
        "erasure_proof", "§9", "an erased subject is gone from every ClickHouse table", evidence, total == 0, details
    )


def _no_profiling(policy: Policy, ev: Evidence) -> ReportLine:
    names = [f"records.{t}.{c}" for t, cols in ev.record_columns.items() for c in cols]
    names += [f"analyst.{t}.{c}" for t, cols in ev.analyst_columns.items() for c in cols]
    tables = list(ev.record_columns) + list(ev.analyst_columns) + list(ev.other_tables)
    suspicious = sorted({n for n in names + tables if PROFILING_NAME.search(n.rsplit(".", 1)[-1])})
    evidence = (
        f"policy: {policy.notice.automated_decisions}; {len(tables)} tables/views and {len(names)} columns checked, "
        + ("none named score/profile/rating/risk" if not suspicious else f"suspicious: {', '.join(suspicious)}")
    )
    return ReportLine("no_profiling", "§12", "no automated decision-making or profiling", evidence, not suspicious)


def _access_control(policy: Policy, ev: Evidence) -> ReportLine:
    forbidden = {name for r in policy.records.values() for name in r.identifier_fields} | set(PSEUDONYMOUS_COLUMNS)
    exposed = sorted(f"analyst.{v}.{c}" for v, cols in ev.analyst_columns.items() for c in cols if c in forbidden)
    missing_views = sorted(r.table for r in policy.records.values() if r.table not in ev.analyst_columns)
    unfiltered = sorted(
        v
        for v in ev.analyst_columns
        if "subject_keys" in ev.record_columns.get(v, ()) and not ev.analyst_restriction_filter.get(v, False)
    )
    passed = not exposed and not missing_views and not unfiltered
    evidence = (
        f"{len(ev.analyst_columns)} analyst views, {sum(len(c) for c in ev.analyst_columns.values())} columns: "
        f"no direct identifier ({len(forbidden)} checked) nor subject key; restricted subjects hidden "
        f"({ev.active_restrictions} active restriction(s)/objection(s))"
    )
    if not passed:
        evidence = "; ".join(
            part
            for part in (
                f"exposed: {', '.join(exposed)}" if exposed else "",
                f"record tables without analyst view: {', '.join(missing_views)}" if missing_views else "",
                f"views not hiding restricted subjects: {', '.join(unfiltered)}" if unfiltered else "",
            )
            if part
        )
    return ReportLine(
        "access_control",
        "§13",
        "analysts see no direct identifiers by default",
        evidence,
        passed,
    )


def _recipients(policy: Policy, ev: Evidence) -> ReportLine:
    """Notice §6: recipients (group companies, processors) work through the analyst role,
    whose grants reach the identifier-free analyst views only."""
    forbidden = {name for r in policy.records.values() for name in r.identifier_fields} | set(PSEUDONYMOUS_COLUMNS)
    exposed = sorted(f"analyst.{v}.{c}" for v, cols in ev.analyst_columns.items() for c in cols if c in forbidden)
    grants = [g for g in access_statements(policy) if g.startswith("GRANT") and g.endswith(f"TO {ANALYST_ROLE}")]
    beyond = sorted(g for g in grants if f" ON {ANALYST_DB}." not in g)
    passed = bool(ev.analyst_columns) and not exposed and not beyond
    evidence = (
        f"{len(policy.notice.recipients)} recipient(s) of the notice get the {ANALYST_ROLE} role: "
        f"{len(grants)} grant(s), all on {ANALYST_DB}.*; {len(ev.analyst_columns)} analyst views without "
        f"direct identifiers; exports go to the data subject through the DPO only"
    )
    details = tuple(f"exposed: {c}" for c in exposed) + tuple(f"grant beyond the analyst views: {g}" for g in beyond)
    return ReportLine(
        "recipients",
        "§6",
        "recipients see no direct identifier (analyst views only)",
        evidence if passed else "; ".join(details) or "no analyst views found",
        passed,
        details,
    )


def _processing_location(policy: Policy) -> ReportLine:
    """Notice §7: every store, processor and recipient has a declared location; any outside
    the EU/EEA has a transfer safeguard recorded."""
    processing = policy.processing
    roles = {loc.role for loc in processing.locations}
    missing_roles = sorted({"store", "processor", "recipient"} - roles)
    bad = processing.unsafeguarded()
    details = tuple(
        f"{loc.role}: {loc.name}: {loc.country}"
        + ("" if processing.in_eu_eea(loc) else f" (outside the EU/EEA; safeguard: {loc.safeguard or 'none'})")
        for loc in processing.locations
    )
    outside = sum(1 for loc in processing.locations if not processing.in_eu_eea(loc))
    countries = ", ".join(sorted({loc.country for loc in processing.locations}))
    evidence = (
        f"{len(processing.locations)} declared locations ({countries}); "
        f"{outside} outside the EU/EEA, {len(bad)} of them without a safeguard; "
        f"Kubernetes pinned to {len(processing.kubernetes_regions)} EU/EEA regions"
    )
    if missing_roles:
        evidence += f"; no declared location for: {', '.join(missing_roles)}"
    return ReportLine(
        "processing_location",
        "§7",
        "processing in the EU/EEA; outside it only with a GDPR safeguard",
        evidence,
        not bad and not missing_roles,
        details,
    )


def _exports_expire(ex: ExportsEvidence) -> ReportLine:
    """Access exports hold everything about a person: they expire, and only their owner reads them."""
    private = ex.not_private == 0 and ex.directory_private
    if private:
        access = "readable by their owner only"
    else:
        access = f"{ex.not_private} file(s) readable by others" + ("" if ex.directory_private else ", directory open")
    return ReportLine(
        "exports_expire",
        "§9, §8",
        f"access exports expire after {ex.retention_days} d and are private to their owner",
        f"{ex.held} export file(s) held, {ex.past_expiry} older than {ex.retention_days} d; {access}",
        ex.past_expiry == 0 and private,
    )


def _personal_access(access: AccessEvidence) -> tuple[ReportLine, ...]:
    users = sum(access.users_by_role.values())
    roles = ", ".join(f"{role} {n}" for role, n in sorted(access.users_by_role.items()) if n)
    log_evidence = (
        "no access log yet"
        if access.log_entries is None
        else f"{access.log_entries} logged requests, {access.log_accepted} queries run by {access.log_users} user(s), "
        f"last {access.last_access or '-'}; "
        + ("file readable by its owner only" if access.log_private else "file readable by others")
    )
    return (
        ReportLine(
            "no_anonymous_access",
            "§13",
            "the register is reached only with a personal username and password (no anonymous access)",
            access.anonymous_probe,
            access.anonymous_refused,
        ),
        ReportLine(
            "personal_users",
            "§13",
            "staff whose work needs it have personal users with a role (analyst, dpo, pipeline)",
            f"{users} personal user(s): {roles}" if users else "no personal users: `records users add NAME --role R`",
            users > 0,
        ),
        ReportLine(
            "access_log",
            "§13",
            "every query of the register is logged: who, when, which tables, how many rows",
            log_evidence,
            access.log_accepted > 0 and access.log_private,
        ),
    )


def _kafka_config(ev: Evidence) -> ReportLine:
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


def _kafka_linger(policy: Policy, ev: Evidence) -> ReportLine:
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

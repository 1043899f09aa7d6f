"""The compliance report, as a pure function: policy + collected evidence -> one line per
commitment of the privacy notice, each with its live evidence and pass/fail.

Collecting the evidence (ClickHouse queries, Kafka admin calls) lives in
`report_collect.py`; the evidence types in `report_evidence.py`; the verdicts, one function
per commitment, in `report_data_verdicts.py` (what is held, how long, the rights, Kafka)
and `report_access_verdicts.py` (who sees it and where it goes); rendering in
`report_html.py` and the CLI. Nothing here does I/O, so every verdict is unit-tested with
hand-made evidence.

A line fails when its evidence shows a breach, and also when the evidence could not be
collected (e.g. Kafka unreachable): an unproven commitment is not a kept one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.policy import Policy
from retention_jobs import report_access_verdicts as access
from retention_jobs import report_data_verdicts as held
from retention_jobs.report_evidence import Evidence, ReportLine

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
                "max_linger_ms": int(self.policy.erasure_max_linger.total_seconds() * 1000),
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
        held.sources_line(policy, evidence),
        held.categories_line(policy, evidence),
        held.legal_bases_line(policy),
        held.consent_line(evidence),
        held.stripped_line(policy, evidence),
    ]
    if any("recording_notice_before_start" in r.requires for r in policy.records.values()):
        lines.append(held.recording_notice_line(evidence))
    if evidence.recording_bounds is not None:
        lines.append(held.recording_bounds_line(evidence.recording_bounds))
    lines.extend(held.retention_line(record, evidence) for record in policy.records.values())
    lines.extend(held.right_line(right_id, text, types, policy, evidence) for right_id, text, types in RIGHTS)
    lines.append(held.erasure_proof_line(evidence))
    lines.append(held.identity_verified_line(evidence))
    lines.append(access.no_profiling_line(policy, evidence))
    lines.append(access.access_control_line(policy, evidence))
    lines.append(access.recipients_line(policy, evidence))
    lines.append(access.processing_location_line(policy))
    if evidence.access is not None:
        lines.extend(access.personal_access_lines(evidence.access))
    if evidence.exports is not None:
        lines.append(access.exports_expire_line(evidence.exports))
    lines.append(held.kafka_config_line(evidence))
    lines.append(held.kafka_linger_line(policy, evidence))
    if evidence.reconciliation is not None:
        lines.append(held.reconciliation_line(evidence.reconciliation))
    return Report(evidence.collected_at, evidence.storage, tuple(lines), evidence, policy)

"""The compliance report's inputs and its unit of output: the evidence the collectors
(`report_collect.py`, `access_audit.py`, `topics_audit.py`) hand in, and `ReportLine`, the
verdict on one commitment of the privacy notice. Pure data, no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from retention_jobs.linger import Linger
from retention_jobs.reconcile import Reconciliation

_LATENCY_STEPS_S = (60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)


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

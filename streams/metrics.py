"""Prometheus metrics of the streams worker, as a typed bundle built from a registry
passed in (tests use a fresh CollectorRegistry). Served by `records worker streams` on
RECORDS_STREAMS_METRICS_PORT (default 9464, 0 turns it off) at /metrics.

Label values are topic names, schema names, record types, policy field names, reasons
and error class names: never personal data.

| metric | labels | meaning |
| --- | --- | --- |
| records_streams_events_in_total | topic, schema | raw messages consumed (schema "-" when undecodable) |
| records_streams_events_out_total | topic, schema | rows emitted (schema "tombstone" for deletions) |
| records_streams_stripped_total | record_type, field, reason | fields removed by policy |
| records_streams_quarantined_total | reason | events held back (the unmet policy requirement) |
| records_streams_dead_lettered_total | source_topic, error_class | messages sent to the dead-letter topic |
| records_streams_consent_updates_total | | consent table writes |
| records_streams_batch_seconds | agent | time to process one batch |
| records_streams_erased_dropped_total | topic, schema | raw events dropped as older than an erasure of their subject |
| records_streams_dsr_executed_total | request_type | data-subject requests verified and executed (command sent) |
| records_streams_dsr_rejected_total | reason | requests refused (RejectReason name: BAD_SIGNATURE, REPLAYED, ...) |
| records_streams_dsr_failed_total | request_type | verified requests that hit an internal error (FAILED receipt) |
| records_streams_dsr_seen_expired_total | | request ids the seen-requests table forgot (past the max age) |
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline.metric_factory import MetricFactory
from pipeline.metric_factory import serve as serve  # re-exported: the streams worker serves through it

_PREFIX = "records_streams"


@dataclass(frozen=True)
class StreamsMetrics:
    events_in: Counter
    events_out: Counter
    stripped: Counter
    quarantined: Counter
    dead_lettered: Counter
    consent_updates: Counter
    batch_seconds: Histogram
    erased_dropped: Counter
    dsr_executed: Counter
    dsr_rejected: Counter
    dsr_failed: Counter
    dsr_seen_expired: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StreamsMetrics:
        m = MetricFactory(registry, _PREFIX)
        return cls(
            events_in=m.counter("events_in", "Raw messages consumed", "topic", "schema"),
            events_out=m.counter("events_out", "Rows emitted", "topic", "schema"),
            stripped=m.counter(
                "stripped",
                "Fields removed by policy, by record type, field and reason",
                "record_type",
                "field",
                "reason",
            ),
            quarantined=m.counter("quarantined", "Events held back by policy", "reason"),
            dead_lettered=m.counter(
                "dead_lettered", "Messages sent to the dead-letter topic", "source_topic", "error_class"
            ),
            consent_updates=m.counter("consent_updates", "Consent table writes"),
            batch_seconds=m.histogram(
                "batch_seconds",
                "Time to process one batch",
                "agent",
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            ),
            erased_dropped=m.counter(
                "erased_dropped", "Raw events dropped as older than an erasure of their subject", "topic", "schema"
            ),
            dsr_executed=m.counter("dsr_executed", "Data-subject requests executed", "request_type"),
            dsr_rejected=m.counter("dsr_rejected", "Data-subject requests refused, by reason", "reason"),
            dsr_failed=m.counter(
                "dsr_failed", "Verified data-subject requests that failed on an internal error", "request_type"
            ),
            dsr_seen_expired=m.counter(
                "dsr_seen_expired", "Request ids the seen-requests table forgot (first verified past the max age)"
            ),
        )

"""Prometheus metrics of the ClickHouse sink, as a typed bundle built from a registry
passed in (tests use a fresh CollectorRegistry). Served by `records worker sink` on
RECORDS_SINK_METRICS_PORT (default 9465, 0 turns it off) at /metrics.

Label values are table names, topic names, partition numbers, policy needs, job names
and error class names: never personal data.

| metric | labels | meaning |
| --- | --- | --- |
| records_sink_rows_inserted_total | table | rows inserted (replays of a batch count again) |
| records_sink_messages_total | topic | messages consumed (counted when their batch is committed) |
| records_sink_skipped_total | topic | tombstones of compacted topics (nothing to store), per committed batch |
| records_sink_dead_lettered_total | source_topic, error_class | messages sent to the dead-letter topic |
| records_sink_insert_retries_total | | batch writes that failed and were retried (offsets not committed) |
| records_sink_commit_failures_total | | offset commits that failed (the batch is replayed, idempotently) |
| records_sink_consumer_restarts_total | | consumers replaced after a fatal error (e.g. fenced after a broker restart) |
| records_sink_consent_cleared_total | table, need | rows whose consent-bound fields a withdrawal cleared (*) |
| records_sink_batch_seconds | | time to write one batch (DLQ, inserts, withdrawals, commands, commit) |
| records_sink_batch_rows | | rows per batch |
| records_sink_consumer_lag | topic, partition | high watermark minus the consumer's position |
| records_sink_maintenance_runs_total | job, outcome | periodic jobs run between batches (ok / error) |
| records_sink_dsr_requests_total | kind, status | data-subject requests executed by a command handler (issue 6) |
| records_sink_dsr_seconds | kind | from a request's issue to its receipt |
| records_sink_dsr_commands_refused_total | reason | DSR commands dead-lettered unexecuted (UNSIGNED, STALE, ...) |

(*) A row stored after its withdrawal counts whether or not the source had already left
those fields empty; a stored row counts only if one of them still held a value.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.metric_factory import MetricFactory
from pipeline.metric_factory import serve as serve  # re-exported: `records worker sink` serves through it

_PREFIX = "records_sink"


@dataclass(frozen=True)
class SinkMetrics:
    rows_inserted: Counter
    messages: Counter
    skipped: Counter
    dead_lettered: Counter
    insert_retries: Counter
    commit_failures: Counter
    consumer_restarts: Counter
    consent_cleared: Counter
    batch_seconds: Histogram
    batch_rows: Histogram
    consumer_lag: Gauge
    maintenance_runs: Counter
    dsr_requests: Counter
    dsr_latency: Histogram
    dsr_commands_refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SinkMetrics:
        m = MetricFactory(registry, _PREFIX)
        return cls(
            rows_inserted=m.counter("rows_inserted", "Rows inserted", "table"),
            messages=m.counter("messages", "Messages consumed", "topic"),
            skipped=m.counter("skipped", "Tombstones skipped", "topic"),
            dead_lettered=m.counter(
                "dead_lettered", "Messages sent to the dead-letter topic", "source_topic", "error_class"
            ),
            insert_retries=m.counter("insert_retries", "Batch writes retried after a failure"),
            commit_failures=m.counter("commit_failures", "Offset commits that failed"),
            consumer_restarts=m.counter("consumer_restarts", "Consumers replaced after a fatal error"),
            consent_cleared=m.counter(
                "consent_cleared", "Rows whose consent-bound fields a withdrawal cleared", "table", "need"
            ),
            batch_seconds=m.histogram(
                "batch_seconds",
                "Time to write one batch, commit included",
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            ),
            batch_rows=m.histogram(
                "batch_rows",
                "Rows per batch",
                buckets=(10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000, 250_000),
            ),
            consumer_lag=m.gauge("consumer_lag", "High watermark minus the consumer position", "topic", "partition"),
            maintenance_runs=m.counter("maintenance_runs", "Periodic jobs run", "job", "outcome"),
            dsr_requests=m.counter(
                "dsr_requests", "Data-subject requests executed, by request type and receipt status", "kind", "status"
            ),
            dsr_latency=m.histogram(
                "dsr_seconds",
                "From a data-subject request's issue to its receipt",
                "kind",
                buckets=(1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 86_400.0),
            ),
            dsr_commands_refused=m.counter(
                "dsr_commands_refused",
                "DSR commands dead-lettered unexecuted (unsigned, tampered, stale, replayed), by reason",
                "reason",
            ),
        )

"""Prometheus metrics of the retention job: a small bundle built from a registry passed in,
so the sink registers them on its own registry and tests use a fresh one."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from pipeline.metric_factory import MetricFactory
from retention_jobs.enforce import RetentionResult


@dataclass(frozen=True)
class RetentionMetrics:
    violations: Gauge
    oldest_age_days: Gauge
    deleted_rows: Gauge
    last_run: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RetentionMetrics:
        m = MetricFactory(registry)
        return cls(
            violations=m.gauge(
                "retention_violations",
                "Rows older than their policy limit still stored after the last retention run",
                "record_type",
            ),
            oldest_age_days=m.gauge(
                "oldest_record_age_days",
                "Age in days of the oldest stored row per record type (0 when the table is empty)",
                "record_type",
            ),
            deleted_rows=m.gauge(
                "retention_deleted_rows", "Rows past their limit deleted by the last retention run", "record_type"
            ),
            last_run=m.gauge(
                "retention_last_run_timestamp_seconds", "When the last retention run finished (Unix time)"
            ),
        )

    def observe(self, result: RetentionResult) -> None:
        for table in result.tables:
            self.violations.labels(record_type=table.record_type).set(table.remaining_expired)
            self.oldest_age_days.labels(record_type=table.record_type).set(table.oldest_age_days or 0.0)
            self.deleted_rows.labels(record_type=table.record_type).set(table.deleted)
        self.last_run.set(result.now.timestamp())

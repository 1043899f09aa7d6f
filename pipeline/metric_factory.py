"""Pure construction of the stages' Prometheus metrics: one `MetricFactory` per bundle
names every metric `<prefix>_<name>` and registers it on the registry the bundle is
built from (tests pass a fresh CollectorRegistry), so a bundle's `create` reads as a
list of names, help texts and labels (sink/metrics.py, streams/metrics.py,
retention_jobs/metrics.py). Counters get prometheus_client's `_total` suffix on export.
`serve` exposes a worker's registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass(frozen=True)
class MetricFactory:
    """Metrics named `<prefix>_<name>` (just `<name>` with no prefix) on `registry`.
    Label names are fixed here; label values are set where a metric is counted and must
    never be personal data."""

    registry: CollectorRegistry
    prefix: str = ""

    def _name(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(self._name(name), documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(self._name(name), documentation, labels, registry=self.registry)

    def histogram(self, name: str, documentation: str, *labels: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(self._name(name), documentation, labels, registry=self.registry, buckets=buckets)


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
    """Expose `registry` on `addr`:`port`/metrics (nothing when port is 0)."""
    if port:
        start_http_server(port, addr=addr, registry=registry)

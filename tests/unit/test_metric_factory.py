"""pipeline/metric_factory.py: the names, labels and registry of the metrics the stages'
bundles build with it (the bundles' documented names: tests/unit/test_observability.py)."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metric_factory import MetricFactory, serve
from records.local_kafka import free_port


def _samples(registry: CollectorRegistry) -> dict[str, tuple[dict[str, str], float]]:
    return {s.name: (s.labels, s.value) for family in registry.collect() for s in family.samples}


def test_names_carry_the_prefix_and_labels_are_the_ones_given() -> None:
    registry = CollectorRegistry()
    m = MetricFactory(registry, "records_x")
    m.counter("things", "Things seen", "topic", "reason").labels(topic="t", reason="r").inc(2)
    m.gauge("depth", "Depth").set(3)
    m.histogram("seconds", "Time", "agent", buckets=(1.0, 5.0)).labels(agent="a").observe(2)
    value = registry.get_sample_value
    assert value("records_x_things_total", {"topic": "t", "reason": "r"}) == 2.0
    assert value("records_x_depth") == 3.0
    assert value("records_x_seconds_bucket", {"agent": "a", "le": "1.0"}) == 0.0
    assert value("records_x_seconds_bucket", {"agent": "a", "le": "5.0"}) == 1.0
    assert {s.name for family in registry.collect() for s in family.samples} >= {"records_x_things_total"}


def test_no_prefix_keeps_the_name_and_each_registry_is_its_own() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    MetricFactory(first).gauge("retention_violations", "Rows", "record_type").labels(record_type="calls").set(1)
    MetricFactory(second).gauge("retention_violations", "Rows", "record_type")
    assert _samples(first)["retention_violations"] == ({"record_type": "calls"}, 1.0)
    assert "retention_violations" not in _samples(second)  # labelled, never set there
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MetricFactory(first).counter("retention_violations", "again")


def test_serve_exposes_the_registry_and_port_0_serves_nothing() -> None:
    registry = CollectorRegistry()
    MetricFactory(registry, "records_x").counter("served", "Served").inc()
    serve(registry, 0)  # off: nothing to reach, nothing raised
    port = free_port()
    serve(registry, port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert "records_x_served_total 1.0" in response.read().decode()

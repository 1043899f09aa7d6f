"""The alert rules (deploy/prometheus/rules.yaml) and the Grafana dashboard
(deploy/grafana/records.json) parse, cover what an operator must be told, and name only
metrics the code exports: the names are collected from the metric bundles built on a
fresh CollectorRegistry, so renaming a metric in code without the rules fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from retention_jobs.metrics import RetentionMetrics
from sink.metrics import SinkMetrics
from streams.metrics import StreamsMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Series Prometheus itself provides for every scrape target.
PROMETHEUS_SERIES = {"up"}
# PromQL words that look like metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "rate", "irate", "increase", "delta", "idelta", "deriv", "absent", "absent_over_time",
    "histogram_quantile", "min_over_time", "max_over_time", "avg_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "time", "vector", "scalar", "clamp_min", "clamp_max", "abs",
    "changes", "resets", "label_replace", "timestamp", "inf", "nan",
}  # fmt: skip
REQUIRED_ALERTS = {
    "RecordsErasureReceiptMissing",
    "RecordsRetentionViolation",
    "RecordsDeadLetters",
    "RecordsQuarantineGrowing",
    "RecordsConsumerLagHigh",
    "RecordsConsumerLagOld",
    "RecordsSinkInsertFailures",
    "RecordsWorkerDown",
}


def exported_metrics() -> set[str]:
    """Every series name the workers' metric bundles expose."""
    registry = CollectorRegistry()
    StreamsMetrics.create(registry)
    SinkMetrics.create(registry)
    RetentionMetrics.create(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, grouping labels,
    strings, ranges and numbers removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    words = set(re.findall(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "records.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_bundles_export_the_documented_names() -> None:
    names = exported_metrics()
    assert {"records_streams_events_in_total", "records_sink_consumer_lag", "retention_violations"} <= names
    assert "records_sink_dsr_seconds_bucket" in names


PROMQL_CASES = [
    ('sum by (topic) (rate(records_streams_events_in_total{topic="x"}[5m]))', {"records_streams_events_in_total"}),
    (
        "histogram_quantile(0.9, sum by (le) (rate(records_sink_batch_rows_bucket[1m])))",
        {"records_sink_batch_rows_bucket"},
    ),
    ("time() - max(retention_last_run_timestamp_seconds) > 2 * 86400", {"retention_last_run_timestamp_seconds"}),
    ("min_over_time(sum by (topic) (records_sink_consumer_lag)[30m:1m]) > 1e3", {"records_sink_consumer_lag"}),
    ("increase(records_sink_oops_total[1h] offset 1h) > 0", {"records_sink_oops_total"}),
]


@pytest.mark.parametrize(("expr", "expected"), PROMQL_CASES)
def test_metric_names_are_read_from_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_alert_rules_name_only_exported_metrics() -> None:
    known = exported_metrics() | PROMETHEUS_SERIES
    rules = _rules()
    assert rules
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, (rule["alert"], sorted(names - known))


def test_alert_rules_cover_what_an_operator_must_know() -> None:
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_dashboard_names_only_exported_metrics_and_shows_every_worker_metric() -> None:
    exprs = _dashboard_exprs()
    known = exported_metrics() | PROMETHEUS_SERIES
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names and names <= known, (expr, sorted(names - known))
        used |= names
    base = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    missing = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported_metrics()} - base
    assert not missing, f"metrics on no dashboard panel: {sorted(missing)}"


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "records.json").read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]

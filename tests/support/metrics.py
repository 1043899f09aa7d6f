"""Reading Prometheus metrics of an in-process component (a registry the test passed in)."""

from __future__ import annotations

from typing import Any


def counter(metric: Any, **labels: str) -> float:
    """The sum of `metric`'s `_total` samples whose labels include `labels`."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def observations(metric: Any) -> float:
    """How many values the histogram `metric` (no labels) observed: its `_count` sample."""
    return sum(s.value for family in metric.collect() for s in family.samples if s.name.endswith("_count"))

"""The group watchdog's verdicts on librdkafka statistics reports (shaped as librdkafka
2.x writes them: `brokers` by name with nodeid/source/state, `cgrp` with state)."""

from __future__ import annotations

import json
from typing import Any

from pipeline.kafka.group_watchdog import GroupWatchdog, stuck_reason


def _stats(
    *, broker: str = "UP", group: str | None = "up", coordinator: str | None = "UP", join: str = "steady"
) -> dict[str, Any]:
    brokers: dict[str, Any] = {
        "127.0.0.1:9092/bootstrap": {"nodeid": -1, "source": "configured", "state": "INIT"},
        "127.0.0.1:9092/1": {"nodeid": 1, "source": "learned", "state": broker},
    }
    if coordinator is not None:
        brokers["GroupCoordinator"] = {"nodeid": -1, "source": "logical", "state": coordinator}
    stats: dict[str, Any] = {"brokers": brokers}
    if group is not None:
        stats["cgrp"] = {"state": group, "join_state": join, "assignment_size": 3}
    return stats


def test_a_joined_group_with_its_coordinator_up_is_not_stuck() -> None:
    assert stuck_reason(_stats()) is None
    assert stuck_reason(_stats(join="wait-join")) is None  # a rebalance under way


def test_a_member_neither_joined_nor_joining_is_stuck() -> None:
    # what librdkafka 2.16 reports, for good, for a member fenced by its static instance id
    assert stuck_reason(_stats(join="init")) == "group not joined (join state init)"


def test_a_group_not_up_or_a_coordinator_down_while_the_broker_answers_is_stuck() -> None:
    assert stuck_reason(_stats(group="wait-coord")) == "group state wait-coord"
    assert stuck_reason(_stats(coordinator="DOWN")) == "group coordinator connection DOWN"


def test_nothing_is_stuck_while_no_broker_answers_or_without_a_group() -> None:
    assert stuck_reason(_stats(broker="DOWN", group="query-coord", coordinator="DOWN")) is None
    assert stuck_reason(_stats(group=None)) is None


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_verdict_comes_only_after_stuck_after_s_in_a_row() -> None:
    clock = _Clock()
    watchdog = GroupWatchdog(30.0, clock=clock)
    stuck, fine = json.dumps(_stats(group="wait-coord")), json.dumps(_stats())
    watchdog.observe(stuck)
    clock.now += 25
    watchdog.observe(stuck)
    assert watchdog.verdict is None
    watchdog.observe(fine)  # it recovered: the count starts again
    clock.now += 10
    watchdog.observe(stuck)
    clock.now += 29
    watchdog.observe(stuck)
    assert watchdog.verdict is None
    clock.now += 2
    watchdog.observe(stuck)
    assert watchdog.verdict == "group state wait-coord for 31 s while a broker answers"
    watchdog.observe(fine)
    assert watchdog.verdict is not None  # a verdict stands: the consumer is replaced

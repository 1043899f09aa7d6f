"""Notices a consumer whose group membership is stuck while the cluster answers.

librdkafka has known coordinator bugs after a broker restart: a group that never finds
its coordinator again, or a coordinator connection that never comes back up, while
the broker itself serves requests. Nothing reaches the application then: the consumer
just returns no messages, for good. The watchdog reads librdkafka's statistics (the
`stats_cb` JSON, every `statistics.interval.ms`) and gives a verdict when, for
`stuck_after_s` in a row, a real broker was up but the group was not, the member was
neither joined nor joining, or its coordinator connection was not up. The owner then
replaces the consumer. (A member waiting for topics that do not exist yet looks the same,
and is replaced to no harm: its successor waits the same way.)

While no broker answers (an outage), nothing is stuck: the client is waiting, as it should.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

STATS_INTERVAL_MS = 5000


def stuck_reason(stats: Mapping[str, Any]) -> str | None:
    """Why the group looks stuck in one statistics report, or None when it does not:
    a broker (not a bootstrap or logical one) is UP while the group's state is not `up`,
    its join state is `init`, or its coordinator connection is not UP."""
    brokers = stats.get("brokers") or {}
    answering = any(
        b.get("state") == "UP" and b.get("source") != "logical" and int(b.get("nodeid", -1)) >= 0
        for b in brokers.values()
    )
    group = stats.get("cgrp")
    if not answering or not group:
        return None
    if group.get("state") != "up":
        return f"group state {group.get('state')}"
    if group.get("join_state") == "init":
        # not joined and not joining: what a member fenced by its static instance id
        # shows for good (its fatal error is reported once, and easily lost)
        return "group not joined (join state init)"
    coordinator = brokers.get("GroupCoordinator")
    if coordinator is not None and coordinator.get("state") != "UP":
        return f"group coordinator connection {coordinator.get('state')}"
    return None


class GroupWatchdog:
    """Fed each statistics report (`observe`); `verdict` is set, and stays set, once the
    group has looked stuck for `stuck_after_s` seconds in a row."""

    def __init__(self, stuck_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stuck_after_s = stuck_after_s
        self._clock = clock
        self._since: float | None = None
        self.verdict: str | None = None

    def observe(self, stats_json: str) -> None:
        reason = stuck_reason(json.loads(stats_json))
        now = self._clock()
        if reason is None:
            self._since = None
            return
        if self._since is None:
            self._since = now
        elif self.verdict is None and now - self._since >= self.stuck_after_s:
            self.verdict = f"{reason} for {now - self._since:.0f} s while a broker answers"

"""Pure: the erased-keys tables' retention (issue 11, finding 4) covers every replay of a topic
plus a margin, and expired entries are found."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from pipeline.exceptions import ConfigError
from pipeline.policy import default_policy
from pipeline.topics import ERASED_KEYS_MARGIN, erased_keys_retention, longest_replay
from streams.erased_keys import expired, taken_in

DAY_MS = 86_400_000


def test_the_longest_replay_is_a_week_of_retention_plus_a_daily_segment() -> None:
    assert longest_replay() == timedelta(days=8)


def test_the_policy_ledger_retention_covers_the_longest_replay_plus_a_margin() -> None:
    policy = default_policy()
    assert erased_keys_retention(policy) == timedelta(days=30) >= longest_replay() + ERASED_KEYS_MARGIN
    too_short = dataclasses.replace(policy, erased_keys_retention=timedelta(days=9))
    with pytest.raises(ConfigError, match="erased_keys_retention_days must be at least 15"):
        erased_keys_retention(too_short)


def test_entries_older_than_the_retention_are_expired() -> None:
    now = 1_000 * DAY_MS
    entries = [(b"old", now - 31 * DAY_MS), (b"edge", now - 30 * DAY_MS), (b"new", now - DAY_MS), (b"gone", None)]
    assert expired(entries, now, 30 * DAY_MS) == [b"old"]


def test_an_event_counts_as_taken_in_when_kafka_took_it_if_it_is_dated_later() -> None:
    assert taken_in(5_000, 3.0) == 3_000  # dated ahead of when Kafka took the message in
    assert taken_in(2_000, 3.0) == 2_000  # a late event keeps its own time
    assert taken_in(2_000, None) == taken_in(2_000, 0.0) == 2_000  # no record timestamp

"""bench/state_sizes.py: the deep size behind the bytes-per-subject-key figures, and the
per-subject structures built from simulated events through the real code paths."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bench.state_sizes import StateBuilder, deep_size, per_subject
from records.simulate.events import generate
from records.simulate.model import SimulationConfig


def test_deep_size_counts_a_shared_object_once() -> None:
    shared = "x" * 1000
    one = deep_size([shared])
    assert one >= sys.getsizeof(shared) + sys.getsizeof([shared])
    assert deep_size([shared, shared]) == one + 8  # one more pointer, not another string


def test_deep_size_follows_dicts_sets_and_slots() -> None:
    key = b"k" * 100
    assert deep_size({key: frozenset({key})}) > sys.getsizeof(key) + sys.getsizeof(frozenset({key}))


def test_the_state_holds_what_the_workers_hold_for_simulated_events() -> None:
    now = datetime.now(UTC)
    state = StateBuilder()
    state.feed_all(generate(SimulationConfig(events=1500, seed=3, now=now)), now)
    assert state.events > 1000
    assert len(state.subject_keys) > 100
    assert 0 < len(state.consent) <= len(state.subject_keys)
    assert len(state.index) > 0
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in state.consent.items())


def test_per_subject_reports_bytes_per_key() -> None:
    report = per_subject(1500, seed=3, people=None)
    k = report["distinct_subject_keys"]
    table = report["streams"]["consent_table"]
    assert k > 0 and table["entries"] > 0
    assert table["bytes_per_subject_key"] == round(table["bytes"] / k, 1)
    assert 100 < table["bytes_per_entry"] < 100_000

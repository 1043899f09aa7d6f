"""The store failing for a while: the chDB table directories are made immutable
(`chattr +i`; the tests run as root, for whom a read-only mode is no obstacle), so every
INSERT fails as on a read-only or full disk. The sink backs off with its partitions
paused, counts the retries in `records_sink_insert_retries_total` (the alert), commits
no offset, and catches up when the store returns; the reconciliation is exact."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.fault_steps import BackgroundTraffic, assert_reconciled, chattr, freeze_store, running_with_rows
from tests.support.pipeline_harness import (
    SINK_INPUTS,
    STREAMS_INPUTS,
    Pipeline,
    caught_up,
    committed,
    end_offsets,
    simulated,
    wait_until,
)

EVENTS = 2000
OUTAGE_S = 8.0


def test_the_sink_backs_off_while_the_store_fails_and_catches_up_after(
    pipeline: Pipeline, freezable: list[Path]
) -> None:
    events = simulated(EVENTS, seed=33)
    workers = running_with_rows(pipeline, events[:500])
    sink = workers.sink

    tables = freeze_store(pipeline, freezable)
    failing_since = time.monotonic()
    traffic = BackgroundTraffic(pipeline, events[500:], chunk=100, pause_s=0.05)
    wait_until(lambda: sink.metric("records_sink_insert_retries_total") > 0, 60, "no retry counted")
    ends = end_offsets(pipeline.bootstrap, SINK_INPUTS)
    at_first_retry = committed(pipeline.bootstrap, pipeline.sink_group, ends)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - failing_since)))
    traffic.join(60)
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.app_id, STREAMS_INPUTS), 120, "streams caught up")
    # Nothing committed while the store fails, though there is plenty to read.
    assert committed(pipeline.bootstrap, pipeline.sink_group, ends) == at_first_retry
    assert not caught_up(pipeline.bootstrap, pipeline.sink_group, SINK_INPUTS)
    retries = sink.metric("records_sink_insert_retries_total")
    assert sink.alive()

    chattr("-i", tables)
    freezable.clear()
    recovered_s = wait_until(
        lambda: caught_up(pipeline.bootstrap, pipeline.sink_group, SINK_INPUTS), 90, "sink caught up after the outage"
    )
    outage_s = time.monotonic() - failing_since - recovered_s
    fault = f"store failing {outage_s:.1f} s, {retries:.0f} retries, caught up {recovered_s:.1f} s after it returned"
    assert_reconciled(pipeline, workers.since, EVENTS, fault)

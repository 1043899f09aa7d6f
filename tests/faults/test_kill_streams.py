"""`kill -9` of the streams worker mid-stream, then a restart: the batch whose output was
produced but whose offsets were not committed is processed again, and the reconciliation
finds every raw event in exactly one place (row ids make the replay collapse)."""

from __future__ import annotations

import signal
import time

from tests.support.fault_steps import BackgroundTraffic, assert_reconciled, start_workers, wait_caught_up
from tests.support.pipeline_harness import Pipeline, produce, simulated, wait_until

EVENTS = 3000
RECOVERY_BOUND_S = 45


def test_kill_9_of_the_streams_worker_mid_stream_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    workers = start_workers(pipeline)
    streams = workers.streams
    events = simulated(EVENTS, seed=12)
    produce(pipeline.bootstrap, pipeline.keys, events[:200])
    wait_until(lambda: streams.metric("records_streams_events_in_total") >= 200, 120, "streams processed nothing")
    traffic = BackgroundTraffic(pipeline, events[200:], chunk=50, pause_s=0.1)
    wait_until(lambda: streams.metric("records_streams_events_in_total") >= 600, 60, "streams stalled")
    assert streams.kill(signal.SIGKILL) == -signal.SIGKILL
    assert not traffic.sent.is_set(), "the kill was not mid-stream"
    killed_at = time.monotonic()
    restarted = pipeline.streams()
    restarted.wait_log("Worker ready", 120)
    ready_s = time.monotonic() - killed_at
    traffic.join(120)
    # The bound: the group gives a dead member's partitions away after the session timeout
    # (10 s, streams/app.py WorkerOptions); restart + rejoin + the replay fit in 45 s.
    streams_s, _ = wait_caught_up(pipeline, killed_at)
    assert streams_s < RECOVERY_BOUND_S, f"the restarted worker took {streams_s:.0f} s to catch up"
    print(f"FAULT streams kill -9: ready again {ready_s:.1f} s, caught up {streams_s:.1f} s after the kill")

    result = assert_reconciled(pipeline, workers.since, EVENTS, "streams kill -9")
    print(f"FAULT streams kill -9: {result.letter_copies} dead-letter copies")
    assert result.counts["stored"] > EVENTS // 2
    assert restarted.metric("records_streams_events_in_total") > 0

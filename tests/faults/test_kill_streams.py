"""`kill -9` of the streams worker mid-stream, then a restart: the batch whose output was
produced but whose offsets were not committed is processed again, and the reconciliation
finds every raw event in exactly one place (row ids make the replay collapse)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

from tests.support.pipeline_harness import (
    SINK_INPUTS,
    STREAMS_INPUTS,
    Pipeline,
    caught_up,
    produce,
    reconcile_since,
    simulated,
    wait_sink_owner,
    wait_until,
)

EVENTS = 3000
RECOVERY_BOUND_S = 45


def test_kill_9_of_the_streams_worker_mid_stream_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    sink = pipeline.sink()
    wait_sink_owner(sink, pipeline.chdb_path)
    streams = pipeline.streams()
    streams.wait_log("Worker ready", 120)
    since = datetime.now(UTC) - timedelta(seconds=1)
    events = simulated(EVENTS, seed=12)
    produce(pipeline.bootstrap, pipeline.keys, events[:200])
    wait_until(lambda: streams.metric("records_streams_events_in_total") >= 200, 120, "streams processed nothing")
    sent = threading.Event()
    producer = threading.Thread(
        target=lambda: (produce(pipeline.bootstrap, pipeline.keys, events[200:], chunk=50, pause_s=0.1), sent.set()),
        daemon=True,
    )
    producer.start()
    wait_until(lambda: streams.metric("records_streams_events_in_total") >= 600, 60, "streams stalled")
    assert streams.kill(signal.SIGKILL) == -signal.SIGKILL
    assert not sent.is_set(), "the kill was not mid-stream"
    killed_at = time.monotonic()
    restarted = pipeline.streams()
    restarted.wait_log("Worker ready", 120)
    ready_s = time.monotonic() - killed_at
    producer.join(120)
    assert sent.is_set()
    # The bound: the group gives a dead member's partitions away after the session timeout
    # (10 s, streams/app.py WorkerOptions); restart + rejoin + the replay fit in 45 s.
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.app_id, STREAMS_INPUTS), 120, "streams caught up")
    streams_s = time.monotonic() - killed_at
    assert streams_s < RECOVERY_BOUND_S, f"the restarted worker took {streams_s:.0f} s to catch up"
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.sink_group, SINK_INPUTS), 120, "sink caught up")
    print(f"FAULT streams kill -9: ready again {ready_s:.1f} s, caught up {streams_s:.1f} s after the kill")

    result = reconcile_since(pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since)
    assert len(result.events) == EVENTS
    assert result.missing == () and result.duplicates == (), result.to_dict()
    print(f"FAULT streams kill -9: {result.summary()}; {result.letter_copies} dead-letter copies")
    assert result.counts["stored"] > EVENTS // 2
    assert restarted.metric("records_streams_events_in_total") > 0

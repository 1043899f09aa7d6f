"""The broker stopped and restarted three times mid-stream (a broker of the test's own, so
the session's broker is not disturbed): the streams worker and the sink keep running,
recover without a restart of their own, and the reconciliation is exact.

Three restarts a few seconds apart, not one: each is another chance for the client
library's rarer states (a commit waiting for good on a stuck coordinator, a member fenced
and reported once, a partition lost and assigned again), each of which wedged the sink or
lost events before (README, "Faults").

The bound: both workers have caught up within RECOVERY_BOUND_S of the broker answering
again the last time (clients reconnect with backoff up to 1-10 s; faust rejoins its group;
the sink replaces a consumer stuck for 30 s)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.kafka.admin import KafkaAdmin
from records.local_kafka import LocalBroker
from tests.support.fault_steps import (
    BackgroundTraffic,
    assert_reconciled,
    diagnosis,
    running_with_rows,
    wait_caught_up,
)
from tests.support.pipeline_harness import Pipeline, isolated_pipeline, simulated

EVENTS = 3000
RESTARTS = 3
UP_S = 3.0
OUTAGE_S = 3.0
RECOVERY_BOUND_S = 60.0


@pytest.fixture
def line(own_broker: LocalBroker, tmp_path: Path) -> Iterator[Pipeline]:
    settings = load_settings({"KAFKA_BOOTSTRAP": own_broker.bootstrap})
    admin = KafkaAdmin(dataclasses.replace(settings.kafka))
    with isolated_pipeline(own_broker.bootstrap, admin, tmp_path / "work") as pipeline:
        yield pipeline


def _restart(broker: LocalBroker, timeout: float = 60.0) -> None:
    """Start again on the same directory and ports (retried while the ports linger)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            broker.start()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.timeout(480)
def test_workers_recover_from_broker_restarts_without_restarting(own_broker: LocalBroker, line: Pipeline) -> None:
    events = simulated(EVENTS, seed=44)
    workers = running_with_rows(line, events[:500], sink_batch_size=300)
    sink, streams = workers.sink, workers.streams

    # Traffic throughout; the broker goes away RESTARTS times, with a few seconds up in
    # between (sessions time out, members are fenced and lost, commits fail mid-batch).
    traffic = BackgroundTraffic(line, events[500:], chunk=50, pause_s=0.1, flush_s=240)
    for i in range(RESTARTS):
        time.sleep(UP_S + i)
        own_broker.stop()
        time.sleep(OUTAGE_S)
        assert streams.alive() and sink.alive()
        _restart(own_broker)
    back = time.monotonic()
    try:
        traffic.join(300)
        streams_s, both_s = wait_caught_up(line, back)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(sink)}\n{diagnosis(streams)}") from None
    assert streams.alive() and sink.alive(), "a worker exited instead of recovering"
    assert streams.log().count("Worker ready") == 1
    fault = f"broker restarted {RESTARTS} times, caught up: streams {streams_s:.1f} s, sink {both_s:.1f} s after"
    assert_reconciled(line, workers.since, EVENTS, fault)
    assert both_s < RECOVERY_BOUND_S

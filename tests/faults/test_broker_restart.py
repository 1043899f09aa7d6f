"""The broker stopped and restarted mid-stream (a broker of the test's own, so the
session's broker is not disturbed): the streams worker and the sink keep running, recover
without a restart of their own, and the reconciliation is exact.

The bound: both workers have caught up within RECOVERY_BOUND_S of the broker answering
again (clients reconnect with backoff up to 1-10 s; faust rejoins its group)."""

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

EVENTS = 2000
OUTAGE_S = 5.0
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


def test_workers_recover_from_a_broker_restart_without_restarting(own_broker: LocalBroker, line: Pipeline) -> None:
    events = simulated(EVENTS, seed=44)
    workers = running_with_rows(line, events[:500])
    sink, streams = workers.sink, workers.streams

    own_broker.stop()
    traffic = BackgroundTraffic(line, events[500:], chunk=100, pause_s=0.05)  # queued while the broker is away
    time.sleep(OUTAGE_S)
    assert streams.alive() and sink.alive()
    _restart(own_broker)
    back = time.monotonic()
    traffic.join(120)
    try:
        streams_s, both_s = wait_caught_up(line, back)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(sink)}\n{diagnosis(streams)}") from None
    assert streams.alive() and sink.alive(), "a worker exited instead of recovering"
    assert streams.log().count("Worker ready") == 1
    fault = f"broker restart, streams caught up {streams_s:.1f} s, sink {both_s:.1f} s after"
    assert_reconciled(line, workers.since, EVENTS, fault)
    assert both_s < RECOVERY_BOUND_S

"""The broker stopped and restarted mid-stream (a broker of the test's own, so the
session's broker is not disturbed): the streams worker and the sink keep running, recover
without a restart of their own, and the reconciliation is exact.

The bound: both workers have caught up within RECOVERY_BOUND_S of the broker answering
again (clients reconnect with backoff up to 1-10 s; faust rejoins its group)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.kafka.admin import KafkaAdmin
from records.local_kafka import LocalBroker, free_port
from tests.support.pipeline_harness import (
    SINK_INPUTS,
    STREAMS_INPUTS,
    Pipeline,
    caught_up,
    isolated_pipeline,
    produce,
    reconcile_since,
    simulated,
    wait_sink_owner,
    wait_until,
)

EVENTS = 2000
OUTAGE_S = 5.0
RECOVERY_BOUND_S = 60.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    settings = load_settings()
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    broker = LocalBroker(tmp_path / "kafka", settings.kafka_libs_dir, port=port, controller_port=controller)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


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
    sink = line.sink(batch_size=500)
    wait_sink_owner(sink, line.chdb_path)
    streams = line.streams()
    streams.wait_log("Worker ready", 120)
    since = datetime.now(UTC) - timedelta(seconds=1)
    events = simulated(EVENTS, seed=44)
    produce(line.bootstrap, line.keys, events[:500])
    wait_until(lambda: sink.metric("records_sink_rows_inserted_total") > 0, 120, "the sink inserted nothing")

    own_broker.stop()
    sent = threading.Event()
    producer = threading.Thread(
        target=lambda: (produce(line.bootstrap, line.keys, events[500:], chunk=100, pause_s=0.05), sent.set()),
        daemon=True,
    )
    producer.start()  # queued by the client while the broker is away
    time.sleep(OUTAGE_S)
    assert streams.alive() and sink.alive()
    _restart(own_broker)
    back = time.monotonic()
    producer.join(120)
    assert sent.is_set()
    wait_until(lambda: caught_up(line.bootstrap, line.app_id, STREAMS_INPUTS), 120, "streams caught up")
    streams_s = time.monotonic() - back
    wait_until(lambda: caught_up(line.bootstrap, line.sink_group, SINK_INPUTS), 120, "sink caught up")
    both_s = time.monotonic() - back
    assert streams.alive() and sink.alive(), "a worker exited instead of recovering"
    assert streams.log().count("Worker ready") == 1
    result = reconcile_since(line.bootstrap, line.chdb_path, line.keys, since)
    print(f"FAULT broker restart: streams caught up {streams_s:.1f} s, sink {both_s:.1f} s after; {result.summary()}")
    assert both_s < RECOVERY_BOUND_S
    assert len(result.events) == EVENTS
    assert result.missing == () and result.duplicates == (), result.to_dict()

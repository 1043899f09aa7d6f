"""A sink whose consumer is fenced (a fatal librdkafka error: another member took its static
group.instance.id, as after a broker restart when a rejoin races a pending commit) keeps
running: it drops the batch in hand uncommitted, a new consumer joins, and the
reconciliation is exact. Before, the sink stayed up with a dead consumer and read nothing
(seen in tests/faults/test_broker_restart.py)."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer

from pipeline.config import load_settings
from sink.sink_process import embedded_instance_id
from tests.support.fault_steps import assert_reconciled, chattr, freeze_store, running_with_rows, wait_caught_up
from tests.support.pipeline_harness import SINK_INPUTS, Pipeline, produce, simulated, wait_until

EVENTS = 1000


def _fence(pipeline: Pipeline) -> None:
    """An impostor joins the sink's group under the sink's static instance id (which fences
    the sink's consumer), holds partitions, and closes."""
    settings = load_settings({"RECORDS_CHDB_PATH": str(pipeline.chdb_path)})
    impostor = Consumer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "group.id": pipeline.sink_group,
            "group.instance.id": embedded_instance_id(settings),
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "partition.assignment.strategy": "cooperative-sticky",  # as the sink's, or it cannot join
        }
    )
    impostor.subscribe([spec.name for spec in SINK_INPUTS])
    deadline = time.monotonic() + 30
    while not impostor.assignment() and time.monotonic() < deadline:
        impostor.poll(0.2)
    assert impostor.assignment(), "the impostor did not join"
    impostor.close()


def test_a_fenced_sink_consumer_is_replaced_without_a_restart(pipeline: Pipeline) -> None:
    events = simulated(EVENTS, seed=55)
    workers = running_with_rows(pipeline, events[:500])
    sink = workers.sink

    _fence(pipeline)
    wait_until(lambda: sink.metric("records_sink_consumer_restarts_total") >= 1, 60, "the fenced consumer replaced")

    produce(pipeline.bootstrap, pipeline.keys, events[500:])
    wait_caught_up(pipeline)
    assert sink.alive()
    assert_reconciled(pipeline, workers.since, EVENTS, "sink fenced")


def test_a_sink_fenced_while_it_backs_off_is_replaced(pipeline: Pipeline, freezable: list[Path]) -> None:
    """Fenced while it waits out a failing store with its partitions paused: librdkafka
    reports the fence once, as a message error on a poll (no error callback), and the
    backoff wait used to drop it; the sink then polled on without partitions for good."""
    events = simulated(EVENTS, seed=56)
    workers = running_with_rows(pipeline, events[:500])
    sink = workers.sink

    tables = freeze_store(pipeline, freezable)
    produce(pipeline.bootstrap, pipeline.keys, events[500:700])
    wait_until(lambda: sink.metric("records_sink_insert_retries_total") > 0, 60, "no retry counted")
    _fence(pipeline)
    wait_until(
        lambda: sink.metric("records_sink_consumer_restarts_total") >= 1,
        60,
        "the consumer fenced during the backoff replaced",
    )
    chattr("-i", tables)
    freezable.clear()
    produce(pipeline.bootstrap, pipeline.keys, events[700:])
    wait_caught_up(pipeline)
    assert sink.alive()
    assert_reconciled(pipeline, workers.since, EVENTS, "sink fenced while backing off")

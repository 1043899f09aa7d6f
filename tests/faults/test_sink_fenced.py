"""A sink whose consumer is fenced (a fatal librdkafka error: another member took its static
group.instance.id, as after a broker restart when a rejoin races a pending commit) keeps
running: it drops the batch in hand uncommitted, a new consumer joins, and the
reconciliation is exact. Before, the sink stayed up with a dead consumer and read nothing
(seen in tests/faults/test_broker_restart.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer

from pipeline.config import load_settings
from sink.sink_process import embedded_instance_id
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

EVENTS = 1000


def test_a_fenced_sink_consumer_is_replaced_without_a_restart(pipeline: Pipeline) -> None:
    sink = pipeline.sink(batch_size=500)
    wait_sink_owner(sink, pipeline.chdb_path)
    streams = pipeline.streams()
    streams.wait_log("Worker ready", 120)
    since = datetime.now(UTC) - timedelta(seconds=1)
    events = simulated(EVENTS, seed=55)
    produce(pipeline.bootstrap, pipeline.keys, events[:500])
    wait_until(lambda: sink.metric("records_sink_rows_inserted_total") > 0, 120, "the sink inserted nothing")

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
    wait_until(lambda: sink.metric("records_sink_consumer_restarts_total") >= 1, 60, "the fenced consumer replaced")

    produce(pipeline.bootstrap, pipeline.keys, events[500:])
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.app_id, STREAMS_INPUTS), 120, "streams caught up")
    wait_until(lambda: caught_up(pipeline.bootstrap, pipeline.sink_group, SINK_INPUTS), 120, "sink caught up")
    assert sink.alive()
    result = reconcile_since(pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since)
    print(f"FAULT sink fenced: {result.summary()}")
    assert len(result.events) == EVENTS
    assert result.missing == () and result.duplicates == (), result.to_dict()

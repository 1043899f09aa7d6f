"""Rebalances of the sink's group mid-stream: another member joins for the consent topic
only (taking some of its partitions from the sink, a cooperative revocation, while the
busy chat and call partitions stay) and leaves again, three times right after a burst of
traffic. A revocation or loss is served inside a consume call that can go on returning
messages after it; the sink used to add those to the batch it had just written (or
dropped) and lost them. The reconciliation must be exact."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from tests.support.fault_steps import (
    assert_reconciled,
    diagnosis,
    running_with_rows,
    wait_caught_up,
)
from tests.support.pipeline_harness import SINK_INPUTS, Pipeline, produce, simulated

EVENTS = 4800
VISITS = 3


def _visit(pipeline: Pipeline, stay_s: float = 3.0) -> None:
    """A member of the sink's group, for the consent topic only, that takes partitions,
    holds them `stay_s` without committing anything, and leaves."""
    member = Consumer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "group.id": pipeline.sink_group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "partition.assignment.strategy": "cooperative-sticky",  # as the sink's
        }
    )
    member.subscribe([spec.name for spec in SINK_INPUTS if spec.name.startswith("cs.consent.")])
    # 30 s, the sink's commit deadline: its commit inside the revocation callback no
    # longer waits there (it waited out that deadline when the sink held a batch:
    # tests/integration/test_sink_revocation.py).
    deadline = time.monotonic() + 30
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(0.2)
    assert member.assignment(), "the visiting member got no partition"
    until = time.monotonic() + stay_s
    while time.monotonic() < until:
        member.poll(0.2)
    member.close()


def test_members_joining_and_leaving_the_sinks_group_lose_nothing(pipeline: Pipeline) -> None:
    events = simulated(EVENTS, seed=57)
    workers = running_with_rows(pipeline, events[:300], sink_batch_size=200)
    burst = (EVENTS - 300) // VISITS
    for i in range(VISITS):
        # a burst first, so that the sink's queue is full of fetched messages when the
        # revocation arrives and its consume call goes on after serving it
        produce(pipeline.bootstrap, pipeline.keys, events[300 + i * burst : 300 + (i + 1) * burst], chunk=burst)
        _visit(pipeline)
    try:
        wait_caught_up(pipeline)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(workers.sink)}") from None
    assert workers.sink.alive()
    assert_reconciled(pipeline, workers.since, EVENTS, f"{VISITS} members joined and left the sink's group")

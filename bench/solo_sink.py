"""The "sink alone" figure of `records bench` (step 8 of bench/pipeline_bench.py, and all
of `records bench --only sink`, bench/sink_only.py): a fresh `records worker sink` with
its own consumer group and its own chDB directory, no retention run and no HTTP endpoint,
drains the enriched topics of the stack.

Timed from its first insert (records_sink_rows_inserted > 0) until its group's lag is 0
(it commits only after the rows are stored), or `solo_max_s` after the first insert:
`sink_rows_per_s` is the rows inserted in that window per second, `sink_rows_per_cpu_s`
the same rows per CPU second the sink process used in it (all its threads, the embedded
engine's included); both start-up included when its first insert held every row
(`sink_rate_basis` says which). With `profile`, `py-spy record -f raw` samples the sink over that
window (`python -m bench.profile_summary FILE` summarises it).

Its yardstick, right after it on the same messages: a bare confluent-kafka consumer with
the sink's fetch settings (its own group, from the start) takes every enriched message and
does nothing with it (`consume_loop_messages_per_s`; `sink_vs_consume_loop`, the sink's
rows/s over it, one row per enriched message): how fast this broker and client hand the
backlog over at all, the ceiling of any sink on this machine.

Its memory over the drain (`sink_solo_memory`): the solo sink's RSS sampled every half
second from its first insert to the end of the window, with bench/rss_sampler.py's
growth (the mean of the last quarter of the samples minus that of the second quarter). A
sink whose memory follows its batch, not the backlog, shows a growth near zero however
many messages it drains; one that accumulates shows it rising with the backlog.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.bench_steps import ENRICHED, POLL_S, first_count
from bench.py_spy import profiling
from bench.rss_sampler import RssSampler, growth
from bench.stack import Stack, cpu_seconds, wait_for
from pipeline.exceptions import RecordsError
from pipeline.kafka.admin import group_lag
from sink.sink_options import SinkOptions

SOLO_SINK_GROUP = "cs-clickhouse-sink-bench-solo"
SINK_ROWS = "records_sink_rows_inserted"


def measure_solo_sink(
    stack: Stack,
    *,
    solo_max_s: float,
    timeout: float,
    profile: Path | None = None,
    native: bool = False,
    batch_max_mb: int | None = None,
) -> tuple[dict[str, Any], float]:
    """Run the solo sink over the stack's enriched topics; (figures, its peak RSS in MB).
    `batch_max_mb`: its `--batch-max-mb` (None: the worker's default)."""
    enriched_total = stack.topic_total(ENRICHED)
    batch_mb = batch_max_mb if batch_max_mb is not None else SinkOptions().batch_max_bytes // (1024 * 1024)
    solo_sink = stack.spawn(
        "sink-solo",
        # no retention run: it would fall inside the measured window (the sink runs it
        # after its first batch), and this figure is the drain alone
        [
            "worker",
            "sink",
            "--loglevel",
            "warning",
            "--no-http",
            "--retention-every",
            "0",
            "--group-id",
            SOLO_SINK_GROUP,
            "--batch-max-mb",
            str(batch_mb),
        ],
        env={"RECORDS_CHDB_PATH": str(stack.root / "chdb-solo")},
    )
    result: dict[str, Any] = {"sink_batch_max_mb": batch_mb}
    sampler = RssSampler(every_s=0.5)
    sampler.watch(solo_sink.name, solo_sink.process.pid)
    try:
        sampler.start()
        first = first_count(solo_sink, SINK_ROWS, [solo_sink], timeout)
        drain_from = sampler.elapsed()
        at_first = solo_sink.metric(SINK_ROWS)
        cpu_at_first = cpu_seconds(solo_sink.process.pid)
        with profiling(solo_sink.process.pid, profile, native=native):
            done = wait_for(
                "the solo sink",
                lambda: time.perf_counter() - first > solo_max_s
                or group_lag(stack.admin, SOLO_SINK_GROUP, ENRICHED) == 0,
                [solo_sink],
                timeout=timeout,
                every=POLL_S,
            )
        sampler.sample()
        sampler.stop()
        rows = solo_sink.metric(SINK_ROWS)
        cpu = cpu_seconds(solo_sink.process.pid) - cpu_at_first
        drained = [(at, mb) for at, mb in sampler.samples.get(solo_sink.name, []) if at >= drain_from]
        result["sink_solo_memory"] = {**growth(drained), "samples": drained}
        if rows > at_first:
            result["sink_rows_per_s"] = (rows - at_first) / max(done - first, 1e-3)
            result["sink_rows_per_cpu_s"] = (rows - at_first) / max(cpu, 1e-3)
            result["sink_rate_basis"] = "after its first insert"
        else:  # all of it in its first insert: too few rows to leave start-up out
            result["sink_rows_per_s"] = rows / (done - solo_sink.started)
            result["sink_rows_per_cpu_s"] = rows / max(cpu_seconds(solo_sink.process.pid), 1e-3)
            result["sink_rate_basis"] = "start-up included: too few rows to time after the first insert"
        result["sink_rows"] = rows
        result["sink_backlog_messages"] = enriched_total
        result["sink_seconds"] = done - first
    finally:
        sampler.stop()
        solo_sink.stop()
    options = SinkOptions(batch_max_bytes=batch_mb * 1024 * 1024)
    result["consume_loop_messages_per_s"] = consume_loop(stack, enriched_total, options, timeout=timeout)
    result["sink_vs_consume_loop"] = result["sink_rows_per_s"] / result["consume_loop_messages_per_s"]
    # VmHWM, read at the stop, can trail a VmRSS sample by a fraction of a MB (the kernel
    # updates its high-water mark lazily): the peak is the larger of the two
    return result, max(solo_sink.peak_rss, result["sink_solo_memory"]["peak_mb"])


def consume_loop(stack: Stack, total: int, options: SinkOptions, *, timeout: float) -> float:
    """Messages/s of a bare consumer taking `total` messages of the enriched topics, from
    its first message to its last (see the module docstring)."""
    consumer = Consumer(
        {
            **stack.settings.kafka.as_librdkafka_dict(),
            **options.consumer_settings(),
            "client.id": "bench-consume-loop",
            "group.id": f"bench-consume-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "log_level": 3,
        }
    )
    consumer.subscribe(list(ENRICHED))
    taken = 0
    started = 0.0
    deadline = time.monotonic() + timeout
    try:
        while taken < total:
            if time.monotonic() > deadline:
                raise RecordsError(f"benchmark: the consume loop took {taken:,} of {total:,} messages in time")
            messages = consumer.consume(10_000, 1.0)
            if messages and not started:
                started = time.perf_counter()
            taken += sum(1 for message in messages if message.error() is None)
        return taken / (time.perf_counter() - started)
    finally:
        consumer.close()

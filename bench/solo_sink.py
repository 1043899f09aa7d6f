"""The "sink alone" figure of `records bench` (step 8 of bench/pipeline_bench.py, and all
of `records bench --only sink`, bench/sink_only.py): a fresh `records worker sink` with
its own consumer group and its own chDB directory, no retention run and no HTTP endpoint,
drains the enriched topics of the stack.

Timed from its first insert (records_sink_rows_inserted > 0) until its group's lag is 0
(it commits only after the rows are stored), or `solo_max_s` after the first insert:
`sink_rows_per_s` is the rows inserted in that window per second, `sink_rows_per_cpu_s`
the same rows per CPU second the sink process used in it (all its threads, the embedded
engine's included). With `profile`, `py-spy record -f raw` samples the sink over that
window (`python -m bench.profile_summary FILE` summarises it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.bench_steps import ENRICHED, POLL_S, first_count
from bench.py_spy import profiling
from bench.stack import Stack, cpu_seconds, wait_for
from pipeline.kafka.admin import group_lag

SOLO_SINK_GROUP = "cs-clickhouse-sink-bench-solo"
SINK_ROWS = "records_sink_rows_inserted"


def measure_solo_sink(
    stack: Stack, *, solo_max_s: float, timeout: float, profile: Path | None = None, native: bool = False
) -> tuple[dict[str, Any], float]:
    """Run the solo sink over the stack's enriched topics; (figures, its peak RSS in MB)."""
    enriched_total = stack.topic_total(ENRICHED)
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
        ],
        env={"RECORDS_CHDB_PATH": str(stack.root / "chdb-solo")},
    )
    result: dict[str, Any] = {}
    try:
        first = first_count(solo_sink, SINK_ROWS, [solo_sink], timeout)
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
        rows = solo_sink.metric(SINK_ROWS)
        cpu = cpu_seconds(solo_sink.process.pid) - cpu_at_first
        result["sink_rows_per_s"] = (rows - at_first) / max(done - first, 1e-3)
        result["sink_rows_per_cpu_s"] = (rows - at_first) / max(cpu, 1e-3)
        result["sink_rows"] = rows
        result["sink_backlog_messages"] = enriched_total
        result["sink_seconds"] = done - first
    finally:
        solo_sink.stop()
    return result, solo_sink.peak_rss

"""The "streams alone" figure and its yardsticks, shared by the full run
(bench/pipeline_bench.py, steps 5 and 6) and `records bench --only streams`
(bench/streams_only.py).

A streams worker with its own app id (`SOLO_APP_ID`: its own consumer group and
changelogs, made before it starts) drains every raw message, or stops `solo_max_s` after
its first counted batch; the rate is between its first and last counted batch (start-up
excluded; also given with start-up, and only so when it drained every message before a
second reading: `streams_rate_basis` says which). With `profile`, `py-spy record -f raw --threads`
samples the worker over that window (`python -m bench.profile_summary FILE --thread
MainThread` summarises it). Right after it, on the same messages, the plain loops
(bench/plain_loop.py), bare and with the project's enrichment: the machine in the same
state, so the ratio is what counts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.bench_steps import POLL_S, STREAMS_IN, commit_at_end, first_count, renamed_changelog
from bench.plain_loop import run_plain_loop
from bench.py_spy import profiling
from bench.stack import Stack, wait_for
from pipeline import topics
from pipeline.kafka.admin import ensure_topics
from pipeline.subject_keys import SubjectKeyer
from pipeline.topics import CONSENT_CHANGELOG, DSR, DSR_SEEN_CHANGELOG, ERASURES_CHANGELOG

SOLO_APP_ID = "cs-streams-bench-solo"
CHANGELOGS = (CONSENT_CHANGELOG, ERASURES_CHANGELOG, DSR_SEEN_CHANGELOG)
PLAIN_TOPIC = "bench.plain.v1"


def measure_solo_streams(
    stack: Stack, raw_total: int, *, solo_max_s: float, timeout: float, profile: Path | None = None
) -> tuple[dict[str, Any], float]:
    """Run the solo streams worker over the raw topics; (figures, its peak RSS in MB)."""
    commit_at_end(stack, SOLO_APP_ID, [DSR.name])
    # Its changelogs exist before it starts, as `records topics ensure` makes the real
    # ones: faust creating them itself sometimes races its own metadata and stalls.
    ensure_topics(stack.admin, [renamed_changelog(spec, SOLO_APP_ID) for spec in CHANGELOGS])
    solo = stack.spawn("streams-solo", ["worker", "streams", "--loglevel", "warning", "--app-id", SOLO_APP_ID])
    result: dict[str, Any] = {}
    try:
        first = first_count(solo, STREAMS_IN, [solo], timeout)
        at_first = solo.metric(STREAMS_IN)
        with profiling(solo.process.pid, profile):
            done = wait_for(
                "the solo streams worker",
                lambda: solo.metric(STREAMS_IN) >= raw_total or time.perf_counter() - first > solo_max_s,
                [solo],
                timeout=timeout,
                every=POLL_S,
            )
        counted = solo.metric(STREAMS_IN)
        result["streams_with_startup_events_per_s"] = counted / (done - solo.started)
        if counted > at_first:
            result["streams_events_per_s"] = (counted - at_first) / max(done - first, 1e-3)
            result["streams_rate_basis"] = "after its first batch"
        else:  # it drained them all before a second reading: too few events to leave start-up out
            result["streams_events_per_s"] = result["streams_with_startup_events_per_s"]
            result["streams_rate_basis"] = "start-up included: too few events to time after the first batch"
    finally:
        solo.stop()
    return result, solo.peak_rss


def measure_plain_loops(stack: Stack, keyer: SubjectKeyer, total: int) -> dict[str, float]:
    """The bare and the enriching plain loop on the first `total` raw messages, events/s."""
    stack.admin.create_topics([topics.TopicSpec(PLAIN_TOPIC, "any", "plain-loop output", 3, {})])
    return {
        "bare_loop_events_per_s": run_plain_loop(stack.settings, keyer, PLAIN_TOPIC, total, enrich=False),
        "plain_loop_events_per_s": run_plain_loop(stack.settings, keyer, PLAIN_TOPIC, total, enrich=True),
    }


def ratios(result: dict[str, Any]) -> None:
    """The streams stage's rate over its yardsticks', added to `result`."""
    result["streams_vs_plain_loop"] = result["streams_events_per_s"] / result["plain_loop_events_per_s"]
    result["streams_vs_bare_loop"] = result["streams_events_per_s"] / result["bare_loop_events_per_s"]
    if "quix_events_per_s" in result:
        result["streams_vs_quix"] = result["streams_events_per_s"] / result["quix_events_per_s"]

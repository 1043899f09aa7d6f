"""`records bench`: the pipeline measured as a user runs it, on a fresh stack, in one run.

Protocols, in this order (each figure is events/s unless its name says otherwise):
1. producer: `EventProducer` sends the N pre-built simulated events (encoded before the
   clock starts) until every delivery report is in; this is also the backlog.
2. backlog (e2e): `records worker streams` (`streams_workers` of them, one group) and
   `records worker sink` start together on the backlog; timed from their start (start-up
   included) until the streams workers have counted every raw message and the sink's
   group has committed every enriched message (it commits only after the insert).
   Start-up per worker: spawn -> first batch counted (streams: records_streams_events_in;
   sink: records_sink_rows_inserted).
3. live: with both workers running, `records simulate --events N/4`; timed from the
   start of simulate until the same two conditions hold again. `simulate_events_per_s`:
   the same events over simulate's own run (its start-up included), so the report shows
   whether the simulator, not the pipeline, set the live figure.
4. erasure: first, unless `store_rows` is 0, the sink is stopped, the store grown to that
   many rows with copies of its rows (bench/store_fill.py), the sink started again and one
   untimed erasure run through it; then
   `records dsr erase --phone ...` -> a COMPLETED receipt on cs.dsr.receipts.v1,
   a few requests one after another; p50 / p95 of the full path, and the seconds of each
   step of each request (bench/erasure_steps.py: CLI, streams, sink, reading the receipt).
5. streams alone: a second streams worker (own app id) drains every raw message, or
   stops `solo_max_s` after its first counted batch; the rate is between its first and
   last counted batch (start-up excluded; also given with start-up).
6. plain loops (bench/plain_loop.py) on every raw message, as 5 (the backlog's and the
   live run's events), bare and with the project's enrichment, right after 5 so the
   machine is in the same state: the yardstick for the streams stage
   (`streams_vs_plain_loop`). Then the Quix Streams peer (bench/quix_peer.py, its own
   virtualenv) doing the same work on the same messages (`streams_vs_quix`).
7. sink alone (bench/solo_sink.py): a second sink (own group, own chDB directory, no
   retention run) drains the enriched topics (the output of both streams runs), or stops
   `solo_max_s` after its first insert; rows inserted per second between its first insert
   and the end, and per CPU second the sink process used meanwhile (`sink_rows_per_cpu_s`:
   what the sink costs, whatever else the machine runs); then its yardstick, a bare
   consumer taking the same messages (`sink_vs_consume_loop`). `records bench --only
   sink` runs this step alone (bench/sink_only.py).
Peak RSS is VmHWM of each worker process (read just before it is stopped), the JVM
broker's, and the benchmark process's own (which runs the producer and plain loops).
With `memory`, every worker's RSS is also sampled every second over the whole run and
its growth reported (bench/rss_sampler.py): `result["memory"]`.
With `erasure_only` (`records bench --only erasure`), a run is 1, 2 and 4 only: the
backlog stored by both workers, the store grown, the erasures timed; its result carries
the erasure figures, the producer and backlog rates, start-up and peak RSS, not the
other REQUIRED_KEYS.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_steps import (
    POLL_S,
    SEED,
    SINK_ARGS,
    SINK_GROUP,
    STREAMS_IN,
    drained,
    erase_one,
    first_count,
    frequent_callers,
    kafka_version,
    measure_producer,
    percentile,
    phase_reporter,
    prebuilt_messages,
    simulated,
    versions,
)
from bench.plain_loop import RAW
from bench.quix_peer import QUIXSTREAMS, ensure_quix_venv, run_quix_peer
from bench.rss_sampler import RssSampler
from bench.solo_sink import SINK_ROWS, measure_solo_sink
from bench.solo_streams import PLAIN_TOPIC, measure_plain_loops, measure_solo_streams, ratios
from bench.stack import (
    Stack,
    fresh_stack,
    peak_rss_mb,
    self_peak_rss_mb,
    wait_for,
)
from bench.store_fill import fill_store, stored_row_count
from pipeline.exceptions import RecordsError
from records.wiring import Wiring

REQUIRED_KEYS = (
    "e2e_events_per_s",
    "live_events_per_s",
    "producer_events_per_s",
    "streams_events_per_s",
    "plain_loop_events_per_s",
    "bare_loop_events_per_s",
    "streams_vs_plain_loop",
    "sink_rows_per_s",
    "erasure_full_path_p95_s",
    "startup_s",
    "peak_rss_mb",
    "versions",
    "cores",
    "command",
)


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    erasures: int = 5
    store_rows: int = 1_000_000  # erasures are timed with at least this many rows stored (0: as the run left it)
    timeout_s: float = 1800.0
    command: str = "records bench"
    keep: bool = False  # keep the stack's directory (worker logs) for a look afterwards
    memory: bool = False  # sample each worker's RSS over the run (bench/rss_sampler.py)

    solo_max_s: float = 120.0  # each stage alone drains at most this long after its first batch
    streams_workers: int = 1  # streams worker processes in the backlog and live protocols
    quix_peer: bool = True  # run the Quix Streams peer (bench/quix_peer.py; makes .venv-quix once)
    erasure_only: bool = False  # protocols 1, 2 and 4 only (see the module docstring)

    @property
    def live_events(self) -> int:
        return max(100, self.events // 4)


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every protocol on a fresh stack; returns the results (see REQUIRED_KEYS).
    `progress` is told the name of each phase as it starts."""
    timeout = options.timeout_s
    phase = phase_reporter(progress)

    now = datetime.now(UTC).replace(microsecond=0)
    peer: dict[str, str] = {}
    quix_python: Path | None = None
    if options.quix_peer and not options.erasure_only:
        phase("the Quix Streams peer's virtualenv")
        try:
            quix_python = ensure_quix_venv()
        except RecordsError as exc:
            peer["quixstreams"] = f"not run: {exc}"
    else:
        peer["quixstreams"] = "not run: --only erasure" if options.erasure_only else "not run: --no-peer"
    events = simulated(options.events, now)
    sampler = RssSampler() if options.memory else None
    with fresh_stack(keep=options.keep) as stack:
        if sampler is not None:
            sampler.start()
            stack.on_spawn = lambda worker: sampler.watch(worker.name, worker.process.pid)
        keyer = Wiring(stack.settings).keyer()
        messages = prebuilt_messages(events, keyer)
        result: dict[str, Any] = {"events": len(messages)}
        if options.keep:
            result["stack_dir"] = str(stack.root)

        # 1. producer (and the backlog)
        phase("producer")
        result["producer_events_per_s"] = measure_producer(stack, messages)
        raw_total = stack.topic_total(RAW)

        # 3. backlog protocol: both workers start on the backlog
        phase("backlog: both workers")
        # `streams_workers` processes in one group share the raw partitions (the first is
        # "streams", the others "streams-2", ...)
        streams_group = [
            stack.spawn("streams" if n == 1 else f"streams-{n}", ["worker", "streams", "--loglevel", "warning"])
            for n in range(1, options.streams_workers + 1)
        ]
        streams = streams_group[0]
        sink = stack.spawn("sink", SINK_ARGS)
        workers = [*streams_group, sink]
        result["streams_workers"] = options.streams_workers
        rss: dict[str, float] = {}
        startup: dict[str, float] = {}
        try:
            for worker in streams_group:
                startup[worker.name] = first_count(worker, STREAMS_IN, workers, timeout) - worker.started
            startup["sink"] = first_count(sink, SINK_ROWS, workers, timeout) - sink.started
            done = wait_for(
                "the backlog to be stored",
                lambda: drained(stack, streams_group, raw_total, SINK_GROUP),
                workers,
                timeout=timeout,
                every=POLL_S,
            )
            result["e2e_events_per_s"] = raw_total / (done - streams.started)
            result["e2e_seconds"] = done - streams.started

            # 4. live protocol
            if not options.erasure_only:
                phase("live: records simulate")
                started = time.perf_counter()
                stack.run_records("simulate", "--events", str(options.live_events), "--seed", str(SEED + 1))
                simulated_at = time.perf_counter()
                live_total = stack.topic_total(RAW)
                done = wait_for(
                    "the live traffic to be stored",
                    lambda: drained(stack, streams_group, live_total, SINK_GROUP),
                    workers,
                    timeout=timeout,
                    every=POLL_S,
                )
                result["live_events_per_s"] = (live_total - raw_total) / (done - started)
                result["simulate_events_per_s"] = (live_total - raw_total) / (simulated_at - started)
                raw_total = live_total

            # 5. erasure, full path, with at least `store_rows` rows stored
            phones = frequent_callers(events, options.erasures + 1)
            if options.store_rows:
                phase(f"store: copies of the stored rows up to {options.store_rows:,} (sink stopped)")
                sink.stop()
                rss[sink.name] = sink.peak_rss
                workers.remove(sink)
                result["erasure_store_rows"] = fill_store(stack, options.store_rows)
                sink = stack.spawn("sink_after_fill", SINK_ARGS)
                workers.append(sink)
                for phone in phones[options.erasures :]:  # warm-up, not timed: the new sink consumes
                    erase_one(stack, phone, timeout=timeout)
            else:
                result["erasure_store_rows"] = stored_row_count(stack)
            phase(f"erasure: records dsr erase ({result['erasure_store_rows']:,} rows stored)")
            timed = [erase_one(stack, phone, timeout=120) for phone in phones[: options.erasures]]
            latencies = [seconds for seconds, _ in timed]
            result["erasure_steps_s"] = [steps for _, steps in timed]
            if not latencies:
                raise RecordsError("benchmark: the simulation made no calls to erase")
            result["erasure_full_path_p50_s"] = statistics.median(latencies)
            result["erasure_full_path_p95_s"] = percentile(latencies, 0.95)
            result["erasure_requests"] = len(latencies)
        finally:
            for worker in workers:
                worker.stop()
                rss[worker.name] = worker.peak_rss

        if options.erasure_only:
            _close(result, stack, startup, rss, sampler)
            return _stamped(result, peer, options, now)

        # 6. streams alone, on every raw message (or for solo_max_s after its first batch)
        phase("streams alone")
        figures, rss["streams_solo"] = measure_solo_streams(
            stack, raw_total, solo_max_s=options.solo_max_s, timeout=timeout
        )
        result.update(figures)

        # 7. the plain loops, right after the streams stage on the same messages (the
        # machine in the same state: the ratio is what counts)
        phase("plain loops")
        result.update(measure_plain_loops(stack, keyer, raw_total))
        if quix_python is not None:
            phase("the Quix Streams peer")
            try:
                result["quix_events_per_s"] = run_quix_peer(
                    quix_python, stack.env, PLAIN_TOPIC, raw_total, stack.root / "quix-state", timeout
                )
                peer["quixstreams"] = QUIXSTREAMS.split("==", 1)[1]
            except RecordsError as exc:
                peer["quixstreams"] = f"not run: {exc}"

        # 8. sink alone, on every enriched message (or for solo_max_s after its first insert)
        phase("sink alone")
        figures, rss["sink_solo"] = measure_solo_sink(stack, solo_max_s=options.solo_max_s, timeout=timeout)
        result.update(figures)

        ratios(result)
        _close(result, stack, startup, rss, sampler)
    return _stamped(result, peer, options, now)


def _close(
    result: dict[str, Any], stack: Stack, startup: dict[str, float], rss: dict[str, float], sampler: RssSampler | None
) -> None:
    """What every run reports once its workers are stopped, the stack still up: start-up,
    peak RSS (the broker's and the benchmark's own too), versions, memory growth."""
    pid = stack.broker.status().pid
    rss["kafka_broker"] = peak_rss_mb(pid) if pid else 0.0
    rss["bench"] = self_peak_rss_mb()
    result["startup_s"] = startup
    result["peak_rss_mb"] = rss
    result["versions"] = {**versions(), "kafka": kafka_version(stack)}
    if sampler is not None:
        sampler.stop()
        result["memory"] = sampler.report()


def _stamped(result: dict[str, Any], peer: dict[str, str], options: BenchOptions, now: datetime) -> dict[str, Any]:
    result["peer"] = peer
    result["cores"] = os.cpu_count() or 0
    result["command"] = options.command
    result["date"] = now.isoformat()
    if options.erasure_only:
        result["erasure_only"] = True
    return result


def write_results(result: dict[str, Any], out_dir: Path) -> Path:
    """bench/results/<date>.json (a second run the same day gets a time suffix)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    path = out_dir / f"{day}.json"
    if path.exists():
        path = out_dir / f"{day}T{datetime.now(UTC).strftime('%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path

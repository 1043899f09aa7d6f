"""`records bench --memory-replay ROUNDS`: does a worker's memory stay flat when the
distinct subject keys do not grow? The replay protocol of issue 15's memory target.

On a fresh stack, the simulated events (seed 7, the pool of persons and visitors given)
are produced as a backlog and both real workers (`records worker streams`, `records
worker sink`) drain it: round 1, where the per-subject state (the consent table, the
subject index, the sink's denial state) and the bounded caches fill. Then the very same
messages (same keys, same event ids, so the same subject keys) are produced again and
drained, `rounds - 1` times: K, the distinct subject keys, does not change, so a worker
whose memory is state + bounded caches stays flat over those rounds, and one that leaks
grows with every round. Each worker's RSS is sampled every second (bench/rss_sampler.py);
the report per worker and round gives first/last/peak MB, and `replay_growth_mb` = the
last round's last sample minus round 2's last sample (round 2 is the first replay: the
allocator's arenas settle there), with `replay_growth_mb_per_1k_events` over the
replayed events in between. What does grow with the replays is the store (the same rows
inserted again; chDB's parts and their metadata), so the sink's figure includes that.

K is counted in this process by running the same events through the project's row
builder (bench/state_sizes.py), not read from the workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.bench_steps import (
    POLL_S,
    SEED,
    SINK_ARGS,
    SINK_GROUP,
    STREAMS_IN,
    drained,
    kafka_version,
    measure_producer,
    phase_reporter,
    prebuilt_messages,
    versions,
)
from bench.plain_loop import RAW
from bench.rss_sampler import RssSampler, phases
from bench.stack import fresh_stack, wait_for
from bench.state_sizes import StateBuilder
from records.simulate import SimulationConfig, TrafficMix, generate
from records.wiring import Wiring


def run_memory_replay(
    *,
    events: int,
    rounds: int = 3,
    people: int | None = None,
    timeout_s: float = 1800.0,
    command: str = "records bench --memory-replay",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Round 1 drains the backlog of `events` simulated events; rounds 2..`rounds` drain
    the same messages again. Returns `memory` (per worker: per round first/last/peak MB,
    replay growth) and the run's context."""
    if rounds < 2:
        raise ValueError("the replay protocol needs at least 2 rounds")
    phase = phase_reporter(progress)

    now = datetime.now(UTC).replace(microsecond=0)
    config = SimulationConfig(events=events, seed=SEED, now=now, people=people, mix=TrafficMix())
    generated = list(generate(config))
    phase("counting distinct subject keys")
    state = StateBuilder()
    state.feed_all(generated, now)
    sampler = RssSampler()
    marks: list[tuple[str, float]] = []
    seconds: list[float] = []
    with fresh_stack() as stack:
        sampler.start()
        stack.on_spawn = lambda worker: sampler.watch(worker.name, worker.process.pid)
        keyer = Wiring(stack.settings).keyer()
        messages = prebuilt_messages(generated, keyer)
        streams = stack.spawn("streams", ["worker", "streams", "--loglevel", "warning"])
        sink = stack.spawn("sink", SINK_ARGS)
        workers = [streams, sink]
        try:
            for n in range(1, rounds + 1):
                phase(f"round {n}: {len(messages):,} messages produced and drained")
                marks.append((f"round_{n}", sampler.elapsed()))
                started = time.perf_counter()
                measure_producer(stack, messages)
                total = stack.topic_total(RAW)

                def stored(total: int = total) -> bool:
                    return drained(stack, [streams], total, SINK_GROUP)

                wait_for(
                    f"round {n} to be stored",
                    stored,
                    workers,
                    timeout=timeout_s,
                    every=POLL_S,
                )
                seconds.append(round(time.perf_counter() - started, 1))
                sampler.sample()  # the round's last sample: drained
            events_in = streams.metric(STREAMS_IN)
        finally:
            for worker in workers:
                worker.stop()
            sampler.stop()
        context = {**versions(), "kafka": kafka_version(stack)}
    memory = {
        name: replay_report(phases(samples, marks), events=len(messages))
        for name, samples in sampler.samples.items()
    }
    return {
        "only": "memory-replay",
        "events": len(messages),
        "rounds": rounds,
        "round_seconds": seconds,
        "streams_events_in": events_in,
        "people_pool": config.pool_size,
        "distinct_subject_keys": len(state.subject_keys),
        "consent_table_keys": len(state.consent),
        "subject_index_records": len(state.index),
        "memory": memory,
        "versions": context,
        "command": command,
        "date": now.isoformat(),
        "cores": os.cpu_count() or 0,
    }


def replay_report(by_round: dict[str, dict[str, float]], *, events: int) -> dict[str, Any]:
    """The rounds of one worker plus its replay growth: the last round's last sample minus
    round 2's (see the module docstring), and that per 1,000 events replayed in between."""
    names = sorted(by_round, key=lambda name: int(name.rsplit("_", 1)[1]))
    out: dict[str, Any] = {"rounds": {name: by_round[name] for name in names}}
    if len(names) >= 3 and names[1] == "round_2":
        replayed = events * (len(names) - 2)
        grown = by_round[names[-1]]["last_mb"] - by_round["round_2"]["last_mb"]
        out["replay_growth_mb"] = round(grown, 1)
        out["replay_growth_mb_per_1k_events"] = round(grown / replayed * 1000, 3) if replayed else 0.0
    return out

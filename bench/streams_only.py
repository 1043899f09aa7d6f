"""`records bench --only streams`: the "streams alone" figure and its plain-loop
yardsticks (bench/solo_streams.py) without the rest of the run, in about a minute, to
time changes to the streams stage.

On a fresh stack, `EventProducer` writes the simulated events to the raw topics; the
solo streams worker drains them, then the plain loops run on the same messages. Unlike
the full run, no backlog run came first: cs.subjects.v1 starts empty (the full run's
solo worker first tails the subject records of the backlog run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_steps import kafka_version, measure_producer, phase_reporter, prebuilt_messages, simulated, versions
from bench.plain_loop import RAW
from bench.solo_streams import measure_plain_loops, measure_solo_streams, ratios
from bench.stack import fresh_stack
from records.wiring import Wiring


def run_streams_only(
    *,
    events: int,
    solo_max_s: float = 120.0,
    timeout_s: float = 900.0,
    command: str = "records bench --only streams",
    profile: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The solo streams worker and the plain loops on `events` simulated events; the
    figures of bench/solo_streams.py plus the run's context."""
    phase = phase_reporter(progress)

    now = datetime.now(UTC).replace(microsecond=0)
    generated = simulated(events, now)
    with fresh_stack() as stack:
        keyer = Wiring(stack.settings).keyer()
        phase("the raw backlog")
        result: dict[str, Any] = {"producer_events_per_s": measure_producer(stack, prebuilt_messages(generated, keyer))}
        raw_total = stack.topic_total(RAW)
        phase(f"streams alone on {raw_total:,} messages")
        figures, rss = measure_solo_streams(stack, raw_total, solo_max_s=solo_max_s, timeout=timeout_s, profile=profile)
        result.update(figures)
        phase("plain loops")
        result.update(measure_plain_loops(stack, keyer, raw_total))
        ratios(result)
        result["versions"] = {**versions(), "kafka": kafka_version(stack)}
    result.update(
        {
            "only": "streams",
            "events": raw_total,
            "peak_rss_mb": {"streams_solo": rss},
            "command": command,
            "date": now.isoformat(),
            "cores": os.cpu_count() or 0,
        }
    )
    if profile is not None:
        result["profile"] = str(profile)
    return result

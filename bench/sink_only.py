"""`records bench --only sink`: the "sink alone" figure (bench/solo_sink.py) without the
rest of the run, in about a minute, to time changes to the sink.

On a fresh stack, the simulated events go through the project's enrichment and
enforcement in this process (bench/transform.py, the work the streams stage does) and
their rows are written to the enriched topics the sink reads, `copies` times (the full
run's sink drains the output of two streams runs: the backlog and the streams stage
alone, the same rows twice). Then the solo sink drains them, timed as in the full run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_steps import (
    ENRICHED,
    Message,
    kafka_version,
    measure_producer,
    phase_reporter,
    prebuilt_messages,
    simulated,
    versions,
)
from bench.solo_sink import measure_solo_sink
from bench.stack import fresh_stack
from bench.transform import RawTransform
from pipeline.subject_keys import SubjectKeyer
from records.wiring import Wiring


def enriched_messages(raw: list[Message], keyer: SubjectKeyer, now: datetime) -> list[Message]:
    """The messages the streams stage writes to the sink's topics for `raw`, in order."""
    transform = RawTransform(keyer, enrich=True)
    wanted = set(ENRICHED)
    out: list[Message] = []
    for _, _, value, _ in raw:
        for topic, key, row, headers in transform.routed(value, now):
            if topic in wanted and row is not None:
                pairs = [(name, h.encode() if isinstance(h, str) else h or b"") for name, h in headers or ()]
                out.append((topic, key, row, pairs))
    return out


def run_sink_only(
    *,
    events: int,
    copies: int = 2,
    solo_max_s: float = 120.0,
    timeout_s: float = 900.0,
    command: str = "records bench --only sink",
    profile: Path | None = None,
    native: bool = False,
    batch_max_mb: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The solo sink on a backlog of the enriched rows of `events` simulated events,
    written `copies` times; the figures of bench/solo_sink.py plus the run's context."""
    phase = phase_reporter(progress)

    now = datetime.now(UTC).replace(microsecond=0)
    generated = simulated(events, now)
    with fresh_stack() as stack:
        keyer = Wiring(stack.settings).keyer()
        phase("the enriched backlog")
        rows = enriched_messages(prebuilt_messages(generated, keyer), keyer, now)
        for _ in range(copies):
            measure_producer(stack, rows)
        phase(f"sink alone on {len(rows) * copies:,} messages")
        result, rss = measure_solo_sink(
            stack, solo_max_s=solo_max_s, timeout=timeout_s, profile=profile, native=native, batch_max_mb=batch_max_mb
        )
        result["versions"] = {**versions(), "kafka": kafka_version(stack)}
    result.update(
        {
            "only": "sink",
            "events": len(generated),
            "copies": copies,
            "peak_rss_mb": {"sink_solo": rss},
            "command": command,
            "date": now.isoformat(),
        }
    )
    if profile is not None:
        result["profile"] = str(profile)
    result["cores"] = os.cpu_count() or 0
    return result

"""The steps every fault test takes on its isolated pipeline (tests/support/pipeline_harness.py):
start the sink and the streams worker and wait until both are ready, send traffic in the
background while the fault happens, wait until both groups have caught up, and take the
reconciliation as the verdict: every raw event in exactly one place."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import topics
from records.simulate.model import SimulatedEvent
from retention_jobs.reconcile import Reconciliation
from tests.support.pipeline_harness import (
    SINK_INPUTS,
    STREAMS_INPUTS,
    Pipeline,
    Process,
    caught_up,
    lagging,
    produce,
    reconcile_since,
    wait_sink_owner,
    wait_until,
)


@dataclass(frozen=True)
class Workers:
    """Both workers of a pipeline, ready; `since` opens the reconciliation window (a second
    before they were ready, so nothing the test sends falls outside it)."""

    sink: Process
    streams: Process
    since: datetime


def start_workers(pipeline: Pipeline, *, sink_batch_size: int = 2000) -> Workers:
    """The sink (once it owns its store), then the streams worker (once it says it is ready)."""
    sink = pipeline.sink(batch_size=sink_batch_size)
    wait_sink_owner(sink, pipeline.chdb_path)
    streams = pipeline.streams()
    streams.wait_log("Worker ready", 120)
    return Workers(sink, streams, datetime.now(UTC) - timedelta(seconds=1))


class BackgroundTraffic:
    """`events` produced in a daemon thread, `chunk` at a time with `pause_s` between (a
    steady stream while the fault happens); `sent` is set once Kafka confirmed them all."""

    def __init__(
        self,
        pipeline: Pipeline,
        events: Sequence[SimulatedEvent],
        *,
        chunk: int = 50,
        pause_s: float = 0.1,
        flush_s: float = 60.0,
    ) -> None:
        self.sent = threading.Event()
        self._thread = threading.Thread(
            target=self._send, args=(pipeline, events, chunk, pause_s, flush_s), name="traffic", daemon=True
        )
        self._thread.start()

    def _send(
        self, pipeline: Pipeline, events: Sequence[SimulatedEvent], chunk: int, pause_s: float, flush_s: float
    ) -> None:
        produce(pipeline.bootstrap, pipeline.keys, events, chunk=chunk, pause_s=pause_s, flush_s=flush_s)
        self.sent.set()

    def join(self, timeout: float = 120) -> None:
        """Wait for the rest of the traffic; fails when not all of it was confirmed in time."""
        self._thread.join(timeout)
        assert self.sent.is_set(), f"the traffic was not all sent within {timeout} s"


def wait_caught_up(pipeline: Pipeline, t0: float | None = None, timeout: float = 120) -> tuple[float, float]:
    """Until the streams worker and then the sink have committed the end of their inputs;
    the seconds from `t0` (a `time.monotonic()`, default now) until each had."""
    t0 = time.monotonic() if t0 is None else t0
    _wait_group(pipeline, pipeline.app_id, STREAMS_INPUTS, timeout, "streams")
    streams_s = time.monotonic() - t0
    _wait_group(pipeline, pipeline.sink_group, SINK_INPUTS, timeout, "sink")
    return streams_s, time.monotonic() - t0


def _wait_group(pipeline: Pipeline, group: str, specs: Sequence[topics.TopicSpec], timeout: float, who: str) -> None:
    """Until `group` committed the end of `specs`; on timeout the failure names the
    partitions still behind (committed/end)."""
    try:
        wait_until(lambda: caught_up(pipeline.bootstrap, group, specs), timeout, f"{who} caught up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; behind: {', '.join(lagging(pipeline.bootstrap, group, specs))}") from None


def assert_reconciled(pipeline: Pipeline, since: datetime, events: int, fault: str) -> Reconciliation:
    """The reconciliation since `since` finds `events` raw events, none missing and none
    twice. Prints `FAULT <fault>: <summary>` first (the figures of the run, -s shows them)."""
    result = reconcile_since(pipeline.bootstrap, pipeline.chdb_path, pipeline.keys, since)
    print(f"FAULT {fault}: {result.summary()}")
    assert len(result.events) == events
    assert result.missing == () and result.duplicates == (), result.to_dict()
    return result


def diagnosis(process: Process, log_chars: int = 6000) -> str:
    """For a failure message: the tail of a worker's log and, while it runs, its threads'
    stacks (py-spy, a dev dependency; left out where it cannot attach)."""
    text = f"--- {process.name} log (tail) ---\n{process.log()[-log_chars:]}"
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if process.alive() and Path(spy).exists():
        try:
            dump = subprocess.run([spy, "dump", "--pid", str(process.pid)], capture_output=True, text=True, timeout=60)
            text += f"\n--- {process.name} threads (py-spy) ---\n{dump.stdout}{dump.stderr}"
        except subprocess.TimeoutExpired:
            text += "\n(py-spy dump timed out)"
    return text


def chattr(flag: str, directories: Sequence[Path]) -> None:
    """`chattr +i` / `-i` on each directory: an immutable table directory fails every
    INSERT as a read-only or full disk would (root ignores plain permissions)."""
    for directory in directories:
        subprocess.run(["chattr", flag, str(directory)], check=True, capture_output=True)


def freeze_store(pipeline: Pipeline, frozen: list[Path]) -> list[Path]:
    """Make the table directories of the pipeline's embedded store immutable (every INSERT
    fails from now on); they are added to `frozen` (the `freezable` fixture thaws them)."""
    tables = [p for p in (pipeline.chdb_path / "store").glob("*/*") if p.is_dir()]
    assert tables, "the store has no table directory"
    frozen.extend(tables)
    chattr("+i", tables)
    return tables


def running_with_rows(pipeline: Pipeline, events: Sequence[SimulatedEvent], *, sink_batch_size: int = 500) -> Workers:
    """Both workers started, `events` sent, and the sink seen inserting rows: a pipeline
    mid-stream, ready for a fault."""
    workers = start_workers(pipeline, sink_batch_size=sink_batch_size)
    produce(pipeline.bootstrap, pipeline.keys, events)
    wait_until(lambda: workers.sink.metric("records_sink_rows_inserted_total") > 0, 120, "the sink inserted nothing")
    return workers

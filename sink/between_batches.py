"""What the sink's loop does between batches, on its own thread: the periodic jobs that
need the store's owner (retention enforcement), and the consumer lag gauge."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaException

from sink.metrics import SinkMetrics
from sink.sink_options import PeriodicJob

log = logging.getLogger(__name__)


class JobSchedule:
    """When each `PeriodicJob` is due. Jobs stay closed until `open()` (the first batch was
    committed) or until `wait_s` has passed since the schedule was made, so a job never
    delays the first rows; then each runs under the engine lock, first at once if
    `run_at_start`, and every `every_s` seconds. A failing job is logged and counted."""

    def __init__(
        self,
        jobs: Iterable[PeriodicJob],
        *,
        client: Client,
        lock: threading.Lock | threading.RLock,
        metrics: SinkMetrics,
        wait_s: float,
    ) -> None:
        self.jobs = tuple(jobs)
        self.client = client
        self.lock = lock
        self.metrics = metrics
        self._next = {job.name: (0.0 if job.run_at_start else time.monotonic() + job.every_s) for job in self.jobs}
        self._open = False
        self._wait_until = time.monotonic() + wait_s

    def open(self) -> None:
        """The first batch was committed: jobs may run."""
        self._open = True

    def open_when_waited(self) -> None:
        """Jobs may run once `wait_s` has passed, batch or not."""
        if not self._open and time.monotonic() > self._wait_until:
            self._open = True

    def run_due(self) -> None:
        """Run every job that is due (none while closed)."""
        if not self._open:
            return
        now = time.monotonic()
        for job in self.jobs:
            if now < self._next[job.name]:
                continue
            self._next[job.name] = now + job.every_s
            try:
                with self.lock:
                    job.run(self.client)
            except Exception as exc:  # a job's failure must not stop the sink
                self.metrics.maintenance_runs.labels(job.name, "error").inc()
                log.error("periodic job %s failed: %s: %s", job.name, type(exc).__name__, one_line(exc))
            else:
                self.metrics.maintenance_runs.labels(job.name, "ok").inc()


def observe_lag(raw: Consumer, committed: Mapping[tuple[str, int], int], metrics: SinkMetrics) -> None:
    """Set the lag gauge of every assigned partition: its high watermark minus the
    consumer's position (or the last commit, or the low watermark, before the first fetch)."""
    try:
        assignment = raw.assignment()
        if not assignment:
            return
        for tp in raw.position(assignment):
            low, high = raw.get_watermark_offsets(tp, timeout=1, cached=True)
            if high < 0:
                continue
            position = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), low)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))
    except KafkaException as exc:
        log.debug("lag not observed: %s", one_line(exc))


def one_line(exc: BaseException) -> str:
    """An error's text on one line, at most 500 characters (for a log line)."""
    return " ".join(str(exc).split())[:500]

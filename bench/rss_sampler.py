"""`records bench --memory`: the resident set size of each worker process over the run.

A background thread reads VmRSS of every registered process every `every_s` seconds
(from /proc, Linux). The report per process gives the first and last samples, the peak,
and the growth: the mean RSS of the last quarter of the samples minus that of the second
quarter (the first quarter is start-up: imports, the store opening, the first batches).
A worker whose memory is bounded shows a growth near zero however long the run; one that
leaks grows with the events. The samples themselves go into the JSON (seconds since the
sampler started, MB), thinned to at most `max_samples` per process.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def rss_mb(pid: int) -> float | None:
    """Current resident set size (VmRSS) of a live process in MB; None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class RssSampler:
    """Samples the RSS of named processes in a thread; `report()` after `stop()`."""

    every_s: float = 1.0
    max_samples: int = 400
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _pids: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = 0.0

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid

    def elapsed(self) -> float:
        """Seconds since `start()`, on the clock of the samples (to mark phase boundaries)."""
        return round(time.perf_counter() - self._started, 1)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        """One sample of every watched process now (also called between phases, so a phase
        shorter than `every_s` still has one)."""
        with self._lock:
            now = time.perf_counter() - self._started
            for name, pid in self._pids.items():
                mb = rss_mb(pid)
                if mb is not None:
                    self.samples.setdefault(name, []).append((round(now, 1), round(mb, 1)))

    def report(self) -> dict[str, Any]:
        """Per process: first, last, peak, growth (MB) and the (thinned) samples."""
        out: dict[str, Any] = {}
        for name, samples in self.samples.items():
            out[name] = {**growth(samples), "samples": _thin(samples, self.max_samples)}
        return out


def growth(samples: list[tuple[float, float]]) -> dict[str, float]:
    """first_mb, last_mb, peak_mb, growth_mb (mean of the last quarter minus the second)."""
    values = [mb for _, mb in samples]
    if not values:
        return {"first_mb": 0.0, "last_mb": 0.0, "peak_mb": 0.0, "growth_mb": 0.0, "seconds": 0.0}
    quarter = max(1, len(values) // 4)
    second = values[quarter : 2 * quarter] or values[:quarter]
    last = values[-quarter:]
    return {
        "first_mb": values[0],
        "last_mb": values[-1],
        "peak_mb": max(values),
        "growth_mb": round(statistics.fmean(last) - statistics.fmean(second), 1),
        "seconds": samples[-1][0] - samples[0][0],
    }


def phases(samples: list[tuple[float, float]], marks: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """Per phase: the samples from its mark (seconds on the sampler's clock) up to the next
    phase's mark (the last phase: to the end), as first_mb, last_mb, peak_mb and samples.
    A phase without a sample is left out."""
    out: dict[str, dict[str, float]] = {}
    for i, (name, begin) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else float("inf")
        values = [mb for at, mb in samples if begin <= at < end]
        if values:
            out[name] = {"first_mb": values[0], "last_mb": values[-1], "peak_mb": max(values), "samples": len(values)}
    return out


def _thin(samples: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(samples) <= limit:
        return samples
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)] + [samples[-1]]

"""bench/rss_sampler.py: the growth figure of `records bench --memory`, and sampling a
live process (this one)."""

from __future__ import annotations

import os
import time

from bench.rss_sampler import RssSampler, growth


def test_growth_is_the_last_quarter_against_the_second_so_start_up_does_not_count() -> None:
    start_up = [(float(t), 100.0 + 50 * t) for t in range(10)]  # imports, first batches
    flat = [(float(t), 600.0) for t in range(10, 40)]
    assert growth(start_up + flat)["growth_mb"] == 0.0
    leaking = [(float(t), 600.0 + t) for t in range(10, 40)]
    report = growth(start_up + leaking)
    assert report["growth_mb"] > 15
    assert report["peak_mb"] == 639.0 and report["first_mb"] == 100.0


def test_the_sampler_reads_the_rss_of_a_live_process() -> None:
    sampler = RssSampler(every_s=0.02)
    sampler.watch("self", os.getpid())
    sampler.start()
    deadline = time.monotonic() + 60
    while len(sampler.samples.get("self", [])) < 3:
        assert time.monotonic() < deadline, "no samples"
        time.sleep(0.05)
    sampler.stop()
    report = sampler.report()["self"]
    assert report["peak_mb"] >= report["first_mb"] > 1
    assert len(report["samples"]) >= 3


def test_cpu_seconds_counts_what_the_process_used() -> None:
    from bench.stack import cpu_seconds

    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) >= before + 0.2

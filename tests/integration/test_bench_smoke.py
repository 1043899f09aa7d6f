"""`records bench` end to end on a tiny event count: its own broker and workers start,
every protocol runs and the JSON carries every required key with positive numbers.
No timing is asserted: the benchmark, not a test, carries the speed targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.pipeline_bench import REQUIRED_KEYS, BenchOptions, run_bench, write_results
from records.cli import app

pytestmark = pytest.mark.timeout(480)


def _positive(value: object) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(_positive(v) for v in value.values())
    return isinstance(value, int | float) and value > 0


def test_a_tiny_bench_run_writes_every_figure(tmp_path: Path) -> None:
    # the Quix Streams peer has its own test (test_quix_peer.py): its first run installs quixstreams
    options = BenchOptions(
        events=2000, erasures=1, solo_max_s=10, store_rows=20_000,
        command="records bench --events 2000",
        quix_peer=False,
    )
    result = run_bench(options, progress=print)  # the phases show with -s
    path = write_results(result, tmp_path)

    written = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(written)
    numbers = {k: v for k, v in written.items() if k not in ("versions", "command", "cores")}
    assert [k for k in REQUIRED_KEYS if k in numbers and not _positive(numbers[k])] == []
    assert written["cores"] >= 1
    # the simulator's own rate in the live run, next to the live figure it may cap
    assert written["simulate_events_per_s"] > 0 and written["live_events_per_s"] > 0
    assert {"streams", "sink"} <= set(written["startup_s"])
    assert {"streams", "sink", "streams_solo", "sink_solo", "kafka_broker"} <= set(written["peak_rss_mb"])
    assert written["versions"]["faust-streaming"] and written["command"].startswith("records bench")
    # The erasures were timed on a store grown to store_rows, and each is split into its steps.
    assert written["erasure_store_rows"] >= 20_000
    assert [set(steps) for steps in written["erasure_steps_s"]] == [{"cli", "streams", "sink", "receipt_read"}]


def test_bench_erasure_only_times_erasures_on_a_grown_store(tmp_path: Path) -> None:
    # `records bench --only erasure`: the backlog, the store grown, the erasures timed;
    # no live, solo, plain-loop or peer run (their figures are absent, not zero)
    done = CliRunner().invoke(
        app,
        ["bench", "--only", "erasure", "--events", "2000", "--erasures", "2", "--store-rows", "20000", "--out",
         str(tmp_path)],
    )
    assert done.exit_code == 0, done.output
    assert "erasure full path p50 / p95 (2 requests)" in done.output

    [path] = tmp_path.glob("*.json")
    written = json.loads(path.read_text())
    assert written["erasure_only"] is True
    assert written["erasure_store_rows"] >= 20_000
    assert written["erasure_requests"] == 2 and written["erasure_full_path_p95_s"] > 0
    assert [set(steps) for steps in written["erasure_steps_s"]] == [{"cli", "streams", "sink", "receipt_read"}] * 2
    assert {"streams", "sink"} <= set(written["startup_s"])
    assert not {"live_events_per_s", "streams_events_per_s", "sink_rows_per_s"} & set(written)
    assert written["command"].startswith("records")


def test_bench_streams_only_times_the_solo_worker_against_the_plain_loops(tmp_path: Path) -> None:
    # `records bench --only streams`: the raw backlog, the solo streams worker, the plain loops
    # (enough events for more than one batch: the rate is timed from the first batch on)
    done = CliRunner().invoke(app, ["bench", "--only", "streams", "--events", "10000", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "streams / plain loop" in done.output

    [path] = tmp_path.glob("*.json")
    written = json.loads(path.read_text())
    assert written["only"] == "streams" and written["events"] == 10_000
    figures = ("streams_events_per_s", "plain_loop_events_per_s", "bare_loop_events_per_s", "streams_vs_plain_loop")
    assert [k for k in figures if not _positive(written[k])] == []
    assert written["streams_vs_plain_loop"] == written["streams_events_per_s"] / written["plain_loop_events_per_s"]
    assert _positive(written["peak_rss_mb"])
    assert not {"sink_rows_per_s", "e2e_events_per_s"} & set(written)

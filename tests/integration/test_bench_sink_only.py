"""`records bench --only sink` as a user runs it, on a tiny event count: its own broker,
the enriched rows of the simulated events written twice to the sink's topics, the solo
sink drains them all and the JSON carries the sink's figures. No timing is asserted: the
benchmark, not a test, carries the speed targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_records

pytestmark = pytest.mark.timeout(480)


def test_only_sink_drains_the_enriched_backlog_and_writes_its_figures(tmp_path: Path) -> None:
    done = run_records(
        "bench", "--only", "sink", "--events", "300", "--sink-batch-mb", "8", "--out", str(tmp_path), timeout=420
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sink alone:" in done.stdout and "bare consumer:" in done.stdout

    [path] = tmp_path.glob("*.json")
    written = json.loads(path.read_text())
    assert written["only"] == "sink" and written["copies"] == 2
    assert written["sink_batch_max_mb"] == 8  # the solo sink ran with `--batch-max-mb 8`
    assert written["sink_backlog_messages"] > 300  # chats become a conversation and its messages
    # every message stored (a batch replayed after a rebalance would count twice), none dead-lettered
    assert written["sink_rows"] >= written["sink_backlog_messages"]
    assert written["sink_rows_per_s"] > 0 and written["sink_rows_per_cpu_s"] > 0
    # its yardstick took the same messages
    assert written["consume_loop_messages_per_s"] > 0
    assert written["sink_vs_consume_loop"] == written["sink_rows_per_s"] / written["consume_loop_messages_per_s"]
    assert written["peak_rss_mb"]["sink_solo"] > 0
    # its RSS over the drain, sampled from its first insert on, within the peak reported
    memory = written["sink_solo_memory"]
    sampled = [mb for _, mb in memory["samples"]]
    assert sampled and min(sampled) > 0
    assert memory["peak_mb"] == max(sampled) <= written["peak_rss_mb"]["sink_solo"]
    assert written["command"] == f"records bench --only sink --events 300 --sink-batch-mb 8 --out {tmp_path}"


def test_only_takes_a_stage_it_knows(tmp_path: Path) -> None:
    done = run_records("bench", "--only", "kafka", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "--only takes `streams`, `sink` or `erasure`" in done.stderr
    assert not list(tmp_path.iterdir())


def test_sink_batch_size_goes_with_only_sink(tmp_path: Path) -> None:
    done = run_records("bench", "--sink-batch-mb", "8", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "--sink-batch-mb needs --only sink" in done.stderr
    assert not list(tmp_path.iterdir())

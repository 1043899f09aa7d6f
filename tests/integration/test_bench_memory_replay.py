"""`records bench --memory-replay` end to end on a tiny event count: its own broker and
both workers start, drain the backlog and its replays, and the JSON gives every worker's
RSS per round and its replay growth, with K counted. No memory figure is asserted: the
benchmark, not a test, carries the bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from records.cli import app

pytestmark = pytest.mark.timeout(480)


def test_a_tiny_replay_reports_each_round_of_each_worker(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "--memory-replay", "3", "--events", "600", "--people", "20", "--out", str(tmp_path)]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "distinct subject keys K =" in outcome.output
    (path,) = tmp_path.glob("*.json")
    written = json.loads(path.read_text())
    assert written["rounds"] == 3 and written["distinct_subject_keys"] > 0
    assert written["streams_events_in"] >= 3 * written["events"] * 0.9  # every round went through streams
    for name in ("streams", "sink"):
        report = written["memory"][name]
        assert list(report["rounds"]) == ["round_1", "round_2", "round_3"]
        assert all(r["peak_mb"] >= r["last_mb"] > 10 for r in report["rounds"].values())
        assert "replay_growth_mb" in report

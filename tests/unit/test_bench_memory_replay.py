"""bench/rss_sampler.py `phases` and bench/memory_replay.py `replay_report`: the per-round
RSS of `records bench --memory-replay`, and the replay growth that tells state from a leak."""

from __future__ import annotations

from bench.memory_replay import replay_report
from bench.rss_sampler import phases


def test_phases_split_the_samples_at_the_marks() -> None:
    samples = [(float(t), 100.0 + t) for t in range(10)]
    by_phase = phases(samples, [("round_1", 0.0), ("round_2", 4.0), ("round_3", 8.0)])
    assert by_phase["round_1"] == {"first_mb": 100.0, "last_mb": 103.0, "peak_mb": 103.0, "samples": 4}
    assert by_phase["round_2"]["first_mb"] == 104.0 and by_phase["round_2"]["last_mb"] == 107.0
    assert by_phase["round_3"] == {"first_mb": 108.0, "last_mb": 109.0, "peak_mb": 109.0, "samples": 2}


def test_a_phase_without_samples_is_left_out() -> None:
    assert list(phases([(5.0, 1.0)], [("round_1", 0.0), ("round_2", 3.0)])) == ["round_2"]


def _rounds(*last: float) -> dict[str, dict[str, float]]:
    return {f"round_{n}": {"first_mb": 1.0, "last_mb": mb, "peak_mb": mb, "samples": 3} for n, mb in enumerate(last, 1)}


def test_replay_growth_is_measured_from_the_first_replay_not_the_fill() -> None:
    flat = replay_report(_rounds(300.0, 420.0, 421.0, 419.0), events=10_000)
    assert flat["replay_growth_mb"] == -1.0  # round 1 filled the state; the replays did not grow it
    leaking = replay_report(_rounds(300.0, 420.0, 460.0, 500.0), events=10_000)
    assert leaking["replay_growth_mb"] == 80.0
    assert leaking["replay_growth_mb_per_1k_events"] == 4.0  # 80 MB over 2 x 10,000 replayed events
    assert list(leaking["rounds"]) == ["round_1", "round_2", "round_3", "round_4"]


def test_two_rounds_give_no_replay_growth_figure() -> None:
    assert "replay_growth_mb" not in replay_report(_rounds(300.0, 420.0), events=10_000)

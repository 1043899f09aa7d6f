"""LoginThrottle's counting, lockouts and bounds, on a clock the test moves."""

from __future__ import annotations

import pytest

from pipeline.login_throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **kwargs: float) -> LoginThrottle:
    return LoginThrottle(max_failures=3, lockout_s=10, max_lockout_s=25, forget_after_s=100, clock=clock, **kwargs)


def test_a_name_is_locked_after_max_failures_in_a_row_and_lockouts_double_up_to_the_cap() -> None:
    clock = Clock()
    t = throttle(clock)
    assert [t.failed("ana") for _ in range(3)] == [0, 0, 10]
    assert t.locked_for("ana") == 10 and t.locked_for("dora") == 0
    clock.now += 10
    assert t.locked_for("ana") == 0
    assert [t.failed("ana") for _ in range(3)] == [0, 0, 20]
    clock.now += 20
    assert [t.failed("ana") for _ in range(3)] == [0, 0, 25]


def test_success_and_time_forget_failures() -> None:
    clock = Clock()
    t = throttle(clock)
    t.failed("ana")
    t.failed("ana")
    t.succeeded("ana")
    assert t.failed("ana") == 0 and t.failed("ana") == 0  # counting started again
    clock.now += 101
    assert t.failed("ana") == 0  # the earlier failures are too old to count


def test_tracked_names_are_bounded() -> None:
    clock = Clock()
    t = LoginThrottle(max_failures=1, lockout_s=10, max_names=2, clock=clock)
    for name in ("a", "b", "c"):
        t.failed(name)
    assert t.locked_for("a") == 0  # dropped first
    assert t.locked_for("b") == 10 and t.locked_for("c") == 10


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_failures"):
        LoginThrottle(max_failures=0)

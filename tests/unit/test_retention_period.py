"""Calendar retention periods: the notice's units, ClickHouse's month arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.exceptions import ConfigError
from pipeline.policy import default_policy
from pipeline.retention_period import RetentionPeriod


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_the_policy_states_the_notice_limits_as_calendar_intervals() -> None:
    policy = default_policy()
    assert policy.record("chat_conversation").period == RetentionPeriod(180, "DAY")
    assert policy.record("chat_message").period == RetentionPeriod(180, "DAY")
    assert policy.record("call").period == RetentionPeriod(2, "YEAR")
    assert policy.record("call_recording").period == RetentionPeriod(3, "MONTH")
    assert policy.record("call").period.sql == "INTERVAL 2 YEAR"
    assert policy.record("call_recording").period.sql == "INTERVAL 3 MONTH"


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("180 days", RetentionPeriod(180, "DAY")),
        ("2 years", RetentionPeriod(2, "YEAR")),
        ("1 Month", RetentionPeriod(1, "MONTH")),
    ],
)
def test_parse(text: str, period: RetentionPeriod) -> None:
    assert RetentionPeriod.parse(text) == period


@pytest.mark.parametrize("text", ["", "2", "two years", "3 weeks", "-1 days", "0 days"])
def test_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="retention"):
        RetentionPeriod.parse(text)


def test_months_and_years_are_calendar_months_clamped_like_clickhouse() -> None:
    # the same results `toDateTime64(...) + INTERVAL n MONTH/YEAR` gives in ClickHouse
    three_months = RetentionPeriod(3, "MONTH")
    assert three_months.add_to(at(2026, 8, 31, 5)) == at(2026, 11, 30, 5)
    assert three_months.add_to(at(2026, 11, 30, 10)) == at(2027, 2, 28, 10)
    assert RetentionPeriod(1, "YEAR").add_to(at(2024, 2, 29)) == at(2025, 2, 28)
    assert RetentionPeriod(2, "YEAR").add_to(at(2026, 3, 1)) == at(2028, 3, 1)
    assert RetentionPeriod(180, "DAY").add_to(at(2026, 1, 1)) == at(2026, 1, 1) + timedelta(days=180)


def test_three_months_is_not_ninety_days() -> None:
    now = at(2027, 5, 31, 12)
    row = now - timedelta(days=91)  # 2027-03-01: within 3 months (92 days back), past 90 days
    assert not RetentionPeriod(3, "MONTH").expired(row, now)
    assert RetentionPeriod(90, "DAY").expired(row, now)


def test_clickhouse_interval_is_read_back() -> None:
    engine = "ReplacingMergeTree(ingested_at) ORDER BY event_id TTL started_at + toIntervalYear(2) SETTINGS x = 1"
    assert RetentionPeriod.from_clickhouse(engine) == RetentionPeriod(2, "YEAR")
    assert RetentionPeriod.from_clickhouse("TTL t + toIntervalDay(90)") == RetentionPeriod(90, "DAY")
    assert RetentionPeriod.from_clickhouse("no ttl") is None


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=1, max_value=60),
    st.sampled_from(["DAY", "MONTH", "YEAR"]),
)
def test_adding_a_period_moves_forward_within_its_bounds(moment: datetime, amount: int, unit: str) -> None:
    period = RetentionPeriod(amount, unit)
    later = period.add_to(moment)
    assert later > moment
    assert later - moment <= timedelta(days=period.max_days)
    assert later.time() == moment.time() and later.tzinfo == moment.tzinfo

"""Pure: implausible event times are found, named by field, never by value (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.policy import default_policy
from streams.event_times import implausible_time

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = default_policy()


def _check(event: dict[str, object]) -> str | None:
    return implausible_time(
        "cs.records.ChatConversation",
        event,
        now=NOW,
        earliest=POLICY.earliest_event_time,
        max_future_skew=POLICY.max_future_skew,
    )


def test_the_policy_bounds_default_to_2000_and_one_day() -> None:
    assert POLICY.earliest_event_time == datetime(2000, 1, 1, tzinfo=UTC)
    assert POLICY.max_future_skew == timedelta(days=1)


def test_times_within_the_bounds_pass() -> None:
    skew = POLICY.max_future_skew
    assert _check({"started_at": NOW + skew, "messages": [{"sent_at": datetime(2000, 1, 1, tzinfo=UTC)}]}) is None


def test_a_nested_time_ahead_of_the_clock_is_named_by_its_path_not_its_value() -> None:
    ahead = NOW + POLICY.max_future_skew + timedelta(milliseconds=1)
    reason = _check({"started_at": NOW, "messages": [{"sent_at": NOW}, {"sent_at": ahead}]})
    assert reason == (
        "ChatConversation.messages.sent_at is more than 24 h ahead of the streams stage's clock: "
        "not a plausible event time"
    )


def test_a_time_before_2000_or_in_2400_is_implausible() -> None:
    early = _check({"started_at": datetime(1999, 12, 31, 23, 59, tzinfo=UTC)})
    assert early == "ChatConversation.started_at is before 2000-01-01: not a plausible event time"
    late = _check({"subject": {"updated_at": datetime(2400, 1, 1, tzinfo=UTC)}})
    assert late is not None and late.startswith("ChatConversation.subject.updated_at is more than")
    assert "2400" not in late


def test_the_first_implausible_time_in_field_order_is_named_nested_or_not() -> None:
    before = datetime(1999, 12, 31, tzinfo=UTC)
    ahead = NOW + POLICY.max_future_skew + timedelta(hours=1)
    event = {"transcript": None, "messages": [{"text": "x", "sent_at": NOW}, {"sent_at": before}], "ended_at": ahead}
    assert _check(event) == "ChatConversation.messages.sent_at is before 2000-01-01: not a plausible event time"
    assert _check({**event, "messages": []}) == (
        "ChatConversation.ended_at is more than 24 h ahead of the streams stage's clock: not a plausible event time"
    )

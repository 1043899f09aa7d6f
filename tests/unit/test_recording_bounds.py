"""Notice §5: a recording starts when the call is answered and ends at hang-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.policy import default_policy
from pipeline.recording_bounds import (
    CALL_NOT_ANSWERED,
    CALL_UNKNOWN,
    ENDED_AFTER_HANGUP,
    STARTED_BEFORE_ANSWER,
    WITHIN,
    CallBounds,
    verdict,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CALL = CallBounds(answered_at=T0 + timedelta(seconds=15), ended_at=T0 + timedelta(minutes=5))
GRACE = timedelta(hours=1)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("start", "end", "call", "expected"),
    [
        (CALL.answered_at, CALL.ended_at, CALL, WITHIN),  # exactly answer to hang-up
        (CALL.answered_at + S, CALL.ended_at - S, CALL, WITHIN),
        (CALL.answered_at - timedelta(milliseconds=1), CALL.ended_at, CALL, STARTED_BEFORE_ANSWER),
        (CALL.answered_at, CALL.ended_at + timedelta(milliseconds=1), CALL, ENDED_AFTER_HANGUP),
        (CALL.answered_at, CALL.ended_at, CallBounds(None, CALL.ended_at), CALL_NOT_ANSWERED),
    ],
)
def test_a_recording_is_judged_against_its_call(
    start: datetime, end: datetime, call: CallBounds, expected: str
) -> None:
    assert verdict(start, end, call, ingested_at=T0, now=T0 + timedelta(days=1), grace=GRACE) == expected


def test_an_unknown_call_is_waited_for_until_the_grace_period_ends() -> None:
    start, end = CALL.answered_at, CALL.ended_at
    assert verdict(start, end, None, ingested_at=T0, now=T0 + GRACE, grace=GRACE) is None
    assert verdict(start, end, None, ingested_at=T0, now=T0 + GRACE + S, grace=GRACE) == CALL_UNKNOWN


def test_the_grace_period_is_a_policy_value() -> None:
    assert default_policy().recording_call_grace == timedelta(minutes=60)

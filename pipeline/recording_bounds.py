"""Pure: is a call recording within its call (notice §5: recording starts when the call is
answered and ends at hang-up)?

The sink decides each stored recording against its stored call (sink/recording_bounds.py):
- `within`: the call is known, was answered, and the recording lies in [answered_at,
  ended_at]; analysts see it;
- held, with the reason: `started_before_answer`, `ended_after_hangup`,
  `call_not_answered` (the call is known but was never answered), or `call_unknown` (no
  call arrived within the policy's grace period after the recording was taken in);
- None: the call is not known yet and the grace period has not passed: decided later.
A held recording stays stored (erasure, access and retention reach it like any row) but
no analyst view shows it. Times are compared to the millisecond, as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WITHIN = "within"
STARTED_BEFORE_ANSWER = "started_before_answer"
ENDED_AFTER_HANGUP = "ended_after_hangup"
CALL_NOT_ANSWERED = "call_not_answered"
CALL_UNKNOWN = "call_unknown"
HELD_REASONS = (STARTED_BEFORE_ANSWER, ENDED_AFTER_HANGUP, CALL_NOT_ANSWERED, CALL_UNKNOWN)


@dataclass(frozen=True)
class CallBounds:
    """The stored call of a recording: when it was answered (None: never) and ended."""

    answered_at: datetime | None
    ended_at: datetime


def verdict(
    started_at: datetime,
    ended_at: datetime,
    call: CallBounds | None,
    *,
    ingested_at: datetime,
    now: datetime,
    grace: timedelta,
) -> str | None:
    """WITHIN, one of HELD_REASONS, or None while the call may still arrive."""
    if call is None:
        return CALL_UNKNOWN if now - ingested_at > grace else None
    if call.answered_at is None:
        return CALL_NOT_ANSWERED
    if started_at < call.answered_at:
        return STARTED_BEFORE_ANSWER
    if ended_at > call.ended_at:
        return ENDED_AFTER_HANGUP
    return WITHIN

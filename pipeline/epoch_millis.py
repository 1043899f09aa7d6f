"""Pure: Avro `timestamp-millis` values <-> datetimes, exactly (integer arithmetic, no float
rounding). The one definition the stages, the DSR contract and the simulator share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds of a time (a naive time is taken as UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MS


def from_millis(millis: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return EPOCH + millis * _MS

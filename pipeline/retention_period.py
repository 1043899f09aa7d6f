"""Pure: retention periods as calendar intervals, the same arithmetic in Python and SQL.

The notice states limits in calendar units (chats 180 days, call history 2 years,
recordings 3 months), so a period is an amount of DAY, MONTH or YEAR, never an
approximation in days. Adding one follows ClickHouse's `DateTime64 + INTERVAL n MONTH`:
the day of month is kept and clamped to the last day of a shorter month (31 Aug +
3 months = 30 Nov, 29 Feb + 1 year = 28 Feb), so the DDL's TTL, the retention job's
delete, the expired-on-insert check, the report and reconcile all agree on the instant
a row expires: `time + period < now`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.exceptions import ConfigError

UNITS = ("DAY", "MONTH", "YEAR")
_TEXT = re.compile(r"\s*(?P<amount>\d+)\s+(?P<unit>day|month|year)s?\s*", re.IGNORECASE)
# How ClickHouse shows an interval in system.tables (`engine_full`, `create_table_query`).
_CLICKHOUSE_INTERVAL = re.compile(r"toInterval(?P<unit>Day|Month|Year)\((?P<amount>\d+)\)")
_NOMINAL_DAYS = {"DAY": 1, "MONTH": 30, "YEAR": 365}
_MAX_DAYS = {"DAY": 1, "MONTH": 31, "YEAR": 366}


@dataclass(frozen=True)
class RetentionPeriod:
    """`amount` calendar `unit`s (DAY, MONTH or YEAR); amount is positive."""

    amount: int
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ConfigError(f"retention unit must be one of {', '.join(UNITS)}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ConfigError("retention amount must be a positive whole number")

    @classmethod
    def parse(cls, text: str) -> RetentionPeriod:
        """'180 days', '2 years', '3 months' (singular or plural, any case)."""
        found = _TEXT.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise ConfigError("retention must read '<n> days', '<n> months' or '<n> years'")
        return cls(int(found["amount"]), found["unit"].upper())

    @classmethod
    def from_clickhouse(cls, text: str) -> RetentionPeriod | None:
        """The first interval in a ClickHouse TTL clause as shown by system.tables."""
        found = _CLICKHOUSE_INTERVAL.search(text)
        return cls(int(found["amount"]), found["unit"].upper()) if found else None

    @property
    def sql(self) -> str:
        """`INTERVAL 2 YEAR`: what the DDL and every query add to a row's time."""
        return f"INTERVAL {self.amount} {self.unit}"

    @property
    def label(self) -> str:
        """'2 years', '3 months', '180 days' (report lines, CLI tables)."""
        word = self.unit.lower()
        return f"{self.amount} {word}{'' if self.amount == 1 else 's'}"

    @property
    def nominal_days(self) -> int:
        """365 a year, 30 a month: for charts and display only, never to decide expiry."""
        return self.amount * _NOMINAL_DAYS[self.unit]

    @property
    def max_days(self) -> int:
        """An upper bound in days (366 a year, 31 a month): how far back a window must reach."""
        return self.amount * _MAX_DAYS[self.unit]

    def add_to(self, moment: datetime) -> datetime:
        """`moment` + this period, clamped to the month's last day as ClickHouse does."""
        if self.unit == "DAY":
            return moment + timedelta(days=self.amount)
        months = self.amount * (12 if self.unit == "YEAR" else 1)
        index = moment.year * 12 + moment.month - 1 + months
        year, month = divmod(index, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day)

    def expired(self, moment: datetime, now: datetime) -> bool:
        """Whether a row whose time field is `moment` is past this period at `now`."""
        return self.add_to(moment) < now

    def sql_expired(self, column: str, now_sql: str) -> str:
        """The SQL form of `expired`: `<column> + INTERVAL n UNIT < <now_sql>`."""
        return f"({column} + {self.sql}) < {now_sql}"

"""pipeline/epoch_millis.py: the one conversion between Avro timestamp-millis and datetimes,
exact at millisecond precision and the same wherever a stage imports it from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

import pipeline.dsr
import records.simulate.model
import streams.consent_state
from pipeline.epoch_millis import from_millis, to_millis

MILLIS = st.integers(min_value=-(10**13), max_value=10**14)


@given(MILLIS)
def test_millis_survive_the_round_trip_exactly(millis: int) -> None:
    assert to_millis(from_millis(millis)) == millis
    assert from_millis(millis).tzinfo is UTC


def test_sub_millisecond_parts_are_floored_and_naive_times_are_utc() -> None:
    moment = datetime(2026, 11, 30, 6, 0, 0, 123999, tzinfo=UTC)
    assert to_millis(moment) == to_millis(moment - timedelta(microseconds=999))
    assert to_millis(moment.replace(tzinfo=None)) == to_millis(moment)
    assert to_millis(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == -1


def test_every_module_that_offers_the_conversion_offers_this_one() -> None:
    for module in (pipeline.dsr, streams.consent_state, records.simulate.model):
        assert (module.to_millis, module.from_millis) == (to_millis, from_millis)

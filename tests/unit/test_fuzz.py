"""Fuzzing with a budget: the decoders (pipeline/serde.py) and the enforcement
(streams/rows.py over streams/enforce_consent.py) on generated input.

Contracts checked:
- decoding any bytes either gives a record of a known schema or raises SerdeError; never
  another exception (the workers dead-letter SerdeError and treat anything else as a bug);
- a valid message cut short, with a byte flipped or bytes appended, likewise;
- building rows from any record the raw schemas allow either gives rows that encode with
  their row schemas (so the sink can store them) and whose stripped fields are empty, or
  raises InvalidEvent; never another exception.

The budget: FUZZ_PROFILE=ci (default, ~200 examples per test, a deadline per example) in
`make test`; FUZZ_PROFILE=long (`make fuzz`) runs 5,000 examples per test without a deadline.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.policy import default_policy
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.subject_keys import SubjectKeyer
from streams.consent_state import SubjectConsent
from streams.exceptions import InvalidEvent
from streams.row_types import RAW_RECORD_TYPES
from streams.rows import RowBuilder
from tests.support.avro_strategies import records

settings.register_profile(
    "fuzz-ci", max_examples=200, deadline=timedelta(milliseconds=500), suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("fuzz-long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUDGET = settings.get_profile("fuzz-long" if os.environ.get("FUZZ_PROFILE") == "long" else "fuzz-ci")

CATALOG = default_catalog()
DECODE = AvroDeserializer(catalog=CATALOG)
RAW_SCHEMAS = sorted(RAW_RECORD_TYPES)
BUILDER = RowBuilder(SubjectKeyer(b"\x01" * 32), default_policy())
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ENCODERS = {name: AvroSerializer(name, catalog=CATALOG) for name in CATALOG.names}


def _no_consent(_keys: Any) -> SubjectConsent:
    return SubjectConsent()


@st.composite
def raw_messages(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(RAW_SCHEMAS))
    return ENCODERS[name](draw(records(CATALOG.get(name))))


@settings(BUDGET)
@given(st.binary(max_size=256))
def test_any_bytes_decode_or_raise_serde_error(data: bytes) -> None:
    try:
        decoded = DECODE(data)
    except SerdeError:
        return
    assert decoded.schema_name in CATALOG.names


@settings(BUDGET)
@given(st.binary(max_size=64), st.sampled_from(RAW_SCHEMAS))
def test_a_known_header_with_a_random_body_decodes_or_raises_serde_error(body: bytes, name: str) -> None:
    data = ENCODERS[name]._header + body
    with contextlib.suppress(SerdeError):
        DECODE(data)


@settings(BUDGET)
@given(raw_messages(), st.data())
def test_damaged_messages_decode_or_raise_serde_error(message: bytes, data: st.DataObject) -> None:
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate":
        damaged = message[: data.draw(st.integers(0, len(message) - 1))]
    elif how == "flip":
        at = data.draw(st.integers(0, len(message) - 1))
        damaged = message[:at] + bytes([message[at] ^ data.draw(st.integers(1, 255))]) + message[at + 1 :]
    else:
        damaged = message + data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(SerdeError):
        DECODE(damaged)


@settings(BUDGET)
@given(st.data())
def test_rows_built_from_any_raw_record_encode_and_keep_no_stripped_value(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(RAW_SCHEMAS))
    record = data.draw(records(CATALOG.get(name)))
    # What the worker sees: the record after a trip through the wire format.
    decoded = DECODE(ENCODERS[name](record)).value
    try:
        outcome = BUILDER.build(name, decoded, _no_consent, NOW)
    except InvalidEvent:
        return
    for row in outcome.rows:
        if row.value is None:
            continue  # a tombstone
        assert row.schema is not None
        ENCODERS[row.schema](row.value)  # raises SerdeError if the sink could not take it
        for entry in row.value.get("stripped") or ():
            field, _, reason = entry.partition(":")
            assert reason, entry
            assert row.value.get(field) is None, (row.schema, field, reason)

"""Reading a SubjectRecord's subject keys without decoding the rest (streams/held_keys.py):
the same keys, in the same order, as a full decode, for any record the stage can write;
a body cut inside the keys fails like a full decode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from streams.held_keys import HeldKeysReader

ENCODE = AvroSerializer("SubjectRecord")
DECODE = AvroDeserializer()
TEXT = st.text(max_size=80)


def _record(key: str, linked: list[str], name: str | None) -> dict[str, Any]:
    return {
        "subject_key": key,
        "linked_keys": linked,
        "name": name,
        "email": None,
        "phone": "+358401234567",
        "person_number": None,
        "app_username": None,
        "postal_address": None,
        "updated_at": datetime(2026, 11, 30, 12, tzinfo=UTC),
        "schema_version": 1,
    }


def _full_decode(value: bytes) -> list[bytes]:
    record = DECODE(value).value
    return [k.encode() for k in (record["subject_key"], *record["linked_keys"])]


@given(TEXT, st.lists(TEXT, max_size=70), st.none() | TEXT)
def test_the_keys_are_those_of_a_full_decode(key: str, linked: list[str], name: str | None) -> None:
    value = ENCODE(_record(key, linked, name))
    assert HeldKeysReader(DECODE)(value) == _full_decode(value)


def test_the_rest_of_the_record_is_not_decoded() -> None:
    calls = []

    class Counting(AvroDeserializer):
        def __call__(self, data: bytes | None, ctx: object = None) -> Any:
            calls.append(data)
            return super().__call__(data, ctx)

    value = ENCODE(_record("email-a", ["phone-a", "person-a"], "Matti"))
    assert HeldKeysReader(Counting())(value) == [b"email-a", b"phone-a", b"person-a"]
    assert calls == []


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_a_body_cut_inside_the_keys_raises_serde_error(cut: int) -> None:
    value = ENCODE(_record("k" * 30, ["l" * 30], None))
    header = 10
    with pytest.raises(SerdeError):
        HeldKeysReader(DECODE)(value[: header + cut])

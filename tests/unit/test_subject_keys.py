from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import load_settings
from pipeline.exceptions import ConfigError
from pipeline.subject_keys import IdentifierKind, SubjectKeyer, load_pepper, normalise

PEPPER = bytes(range(32))


def test_equivalent_identifiers_give_one_key() -> None:
    keyer = SubjectKeyer(PEPPER)
    assert keyer.key(IdentifierKind.EMAIL, " Maija.Meikalainen@Example.FI ") == keyer.key(
        IdentifierKind.EMAIL, "maija.meikalainen@example.fi"
    )
    assert keyer.key(IdentifierKind.PHONE, "040 123 4567") == keyer.key(IdentifierKind.PHONE, "+358401234567")
    assert normalise(IdentifierKind.PHONE, "040 123 4567") == "+358401234567"


def test_kinds_and_peppers_separate_keys() -> None:
    keyer = SubjectKeyer(PEPPER)
    assert keyer.key(IdentifierKind.APP_USERNAME, "mm123") != keyer.key(IdentifierKind.VISITOR_ID, "mm123")
    assert SubjectKeyer(PEPPER).key(IdentifierKind.EMAIL, "a@b.fi") != SubjectKeyer(b"x" * 32).key(
        IdentifierKind.EMAIL, "a@b.fi"
    )


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_keys_are_fixed_size_hex_and_distinct_per_identifier(a: str, b: str) -> None:
    keyer = SubjectKeyer(PEPPER)
    key_a, key_b = keyer.key(IdentifierKind.VISITOR_ID, a), keyer.key(IdentifierKind.VISITOR_ID, b)
    for key in (key_a, key_b):
        assert key is None or (len(key) == 64 and set(key) <= set("0123456789abcdef"))
    if key_a is not None and key_b is not None:
        assert (key_a == key_b) == (a.strip() == b.strip())


def test_unusable_identifiers_give_no_key() -> None:
    keyer = SubjectKeyer(PEPPER)
    assert keyer.key(IdentifierKind.PHONE, "not a phone") is None
    assert keyer.key(IdentifierKind.EMAIL, "   ") is None
    assert keyer.keys({IdentifierKind.EMAIL: "a@b.fi", IdentifierKind.PHONE: None}) == [
        keyer.key(IdentifierKind.EMAIL, "a@b.fi")
    ]


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ConfigError):
        SubjectKeyer(b"short")


def test_workers_refuse_to_start_without_a_pepper(tmp_path: Path) -> None:
    settings = load_settings({"RECORDS_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="no subject-key pepper"):
        load_pepper(settings)


def test_demo_generates_a_private_pepper_once(tmp_path: Path) -> None:
    settings = load_settings({"RECORDS_DATA_DIR": str(tmp_path)})
    first = load_pepper(settings, allow_demo=True)
    mode = stat.S_IMODE(os.stat(settings.demo_pepper_file).st_mode)
    assert mode == 0o600
    assert load_pepper(settings, allow_demo=True) == first
    assert len(first) == 32


def test_pepper_from_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "pepper"
    path.write_text("ab" * 32)
    assert load_pepper(load_settings({"RECORDS_PEPPER_FILE": str(path)})) == bytes([0xAB]) * 32
    assert load_pepper(load_settings({"RECORDS_PEPPER": "cd" * 32})) == bytes([0xCD]) * 32
    assert "cd" * 32 not in repr(load_settings({"RECORDS_PEPPER": "cd" * 32}))

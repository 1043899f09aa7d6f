"""Strict pepper parsing (issue 11, finding 7): a pepper that is not exactly hex is refused
with one line that never shows it, instead of being read as other bytes (other keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.exceptions import ConfigError
from pipeline.subject_keys import load_pepper

GOOD = "ab" * 32


def _from_env(value: str) -> bytes:
    return load_pepper(load_settings({"RECORDS_PEPPER": value}))


def _from_file(tmp_path: Path, content: str) -> bytes:
    path = tmp_path / "pepper"
    path.write_text(content, encoding="ascii")
    return load_pepper(load_settings({"RECORDS_PEPPER_FILE": str(path)}))


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + GOOD,  # a prefix: once read as 66 raw bytes, i.e. another pepper
        GOOD + "g",  # one stray character
        GOOD[:-1] + "z",
        GOOD[:10] + " " + GOOD[10:],  # a space inside
        GOOD + "a",  # odd number of digits
        "not hex at all but long enough to pass as thirty-two raw bytes!",
    ],
)
def test_a_pepper_that_is_not_exact_hex_is_refused_without_showing_it(bad: str, tmp_path: Path) -> None:
    for load in (lambda: _from_env(bad), lambda: _from_file(tmp_path, bad + "\n")):
        with pytest.raises(ConfigError) as caught:
            load()
        message = str(caught.value)
        assert "hex" in message and "\n" not in message
        assert bad not in message and GOOD[:16] not in message


def test_a_pepper_shorter_than_32_bytes_is_refused_with_its_length() -> None:
    with pytest.raises(ConfigError, match="holds 31 bytes"):
        _from_env("ab" * 31)


def test_exact_hex_is_accepted_from_env_and_file_with_a_final_newline(tmp_path: Path) -> None:
    assert _from_env(GOOD) == bytes([0xAB]) * 32
    assert _from_env(GOOD.upper()) == bytes([0xAB]) * 32
    assert _from_file(tmp_path, GOOD + "\n") == bytes([0xAB]) * 32

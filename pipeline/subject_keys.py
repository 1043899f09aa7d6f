"""Subject keys: HMAC-SHA256 under a secret pepper over normalised direct identifiers.

Every stored record carries the keys of every identifier it holds, so a data-subject
request given any identifier finds every record without searching plaintext, and
subject-state topics are keyed by them so a tombstone removes a subject by compaction.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from functools import lru_cache

import phonenumbers

from pipeline.config import Settings
from pipeline.exceptions import ConfigError
from pipeline.private_files import private_dir

MIN_PEPPER_BYTES = 32
DEFAULT_PHONE_REGION = "FI"


class IdentifierKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PERSON_NUMBER = "person_number"
    APP_USERNAME = "app_username"
    VISITOR_ID = "visitor_id"


@lru_cache(maxsize=65536)
def normalise_phone(raw: str, region: str = DEFAULT_PHONE_REGION) -> str | None:
    """E.164 form of a phone number, or None if it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(kind: IdentifierKind, value: str | None) -> str | None:
    """The canonical form of an identifier; None for empty or unusable values."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if kind is IdentifierKind.EMAIL:
        return value.lower()
    if kind is IdentifierKind.PHONE:
        return normalise_phone(value)
    if kind is IdentifierKind.APP_USERNAME:
        return value.lower()
    if kind is IdentifierKind.PERSON_NUMBER:
        return value.upper().replace(" ", "")
    return value


class SubjectKeyer:
    """Turns identifiers into subject keys. Holds the pepper; never logs it."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ConfigError(f"the subject-key pepper must be at least {MIN_PEPPER_BYTES} bytes")
        self._pepper = pepper

    def __repr__(self) -> str:
        return "SubjectKeyer(pepper=***)"

    def key(self, kind: IdentifierKind, value: str | None) -> str | None:
        if value is None:
            return None
        return self._key(kind, value)

    # Identifiers repeat (recurring people, and the streams stage keys a raw event twice:
    # for the erasure check, then for its rows): the raw value -> key result is cached,
    # so normalising (phone parsing) and the HMAC run once per distinct value.
    @lru_cache(maxsize=131072)  # noqa: B019 - one keyer per process; identifiers repeat
    def _key(self, kind: IdentifierKind, value: str) -> str | None:
        canonical = normalise(kind, value)
        if canonical is None:
            return None
        return self._mac(kind, canonical)

    def _mac(self, kind: IdentifierKind, canonical: str) -> str:
        message = f"{kind.value}\x1f{canonical}".encode()
        return hmac.new(self._pepper, message, hashlib.sha256).hexdigest()

    def keys(self, identifiers: Mapping[IdentifierKind, str | None]) -> list[str]:
        """Keys of every usable identifier, in a stable order, without duplicates."""
        return self.keys_of((kind, identifiers.get(kind)) for kind in IdentifierKind)

    def keys_of(self, pairs: Iterable[tuple[IdentifierKind, str | None]]) -> list[str]:
        out: list[str] = []
        for kind, value in pairs:
            key = self.key(kind, value)
            if key is not None and key not in out:
                out.append(key)
        return out


def load_pepper(settings: Settings, *, allow_demo: bool = False) -> bytes:
    """The pepper from RECORDS_PEPPER_FILE or RECORDS_PEPPER; the local demo may generate one.

    Workers call this without `allow_demo` and refuse to start when no pepper is set.
    """
    if settings.pepper_file is not None:
        try:
            data = settings.pepper_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read RECORDS_PEPPER_FILE: {exc.strerror}") from None
        return _decode_pepper(data, "RECORDS_PEPPER_FILE")
    if settings.pepper is not None:
        return _decode_pepper(settings.pepper.get().encode(), "RECORDS_PEPPER")
    demo = settings.demo_pepper_file
    if allow_demo:
        if not demo.exists():
            private_dir(demo.parent)
            fd = os.open(demo, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return _decode_pepper(demo.read_bytes(), f"the demo pepper {demo}")
    raise ConfigError(
        "no subject-key pepper: set RECORDS_PEPPER_FILE (or RECORDS_PEPPER); "
        "only the local demo generates one"
    )


_HEX_PEPPER = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def _decode_pepper(data: bytes, source: str) -> bytes:
    """The pepper as bytes: exactly an even number of hex digits (surrounding whitespace,
    e.g. a file's final newline, is ignored), at least MIN_PEPPER_BYTES bytes. Anything else
    (a `0x` prefix, a stray character, raw text) is refused rather than read as other bytes,
    which would silently yield other subject keys. The error names the source and the
    length, never the pepper."""
    text = data.strip(b" \t\r\n")
    if not _HEX_PEPPER.fullmatch(text):
        raise ConfigError(
            f"{source} must be hex digits only (even count, no 0x prefix, no other character)"
        )
    decoded = bytes.fromhex(text.decode("ascii"))
    if len(decoded) < MIN_PEPPER_BYTES:
        raise ConfigError(
            f"{source} holds {len(decoded)} bytes; the subject-key pepper must be at least "
            f"{MIN_PEPPER_BYTES} bytes ({2 * MIN_PEPPER_BYTES} hex digits)"
        )
    return decoded

"""Keying a repeated identifier is a cache hit: the streams stage keys every raw event
twice (erasure check, then the rows) and people recur, so normalising (phone parsing)
and the HMAC must run once per distinct value, with the same result."""

from __future__ import annotations

from pipeline.subject_keys import IdentifierKind, SubjectKeyer


def test_a_repeated_identifier_is_keyed_once_and_gives_the_same_key() -> None:
    keyer = SubjectKeyer(b"k" * 32)
    first = keyer.key(IdentifierKind.PHONE, "040 123 4567")
    before = SubjectKeyer._key.cache_info()
    again = [keyer.key(IdentifierKind.PHONE, "040 123 4567") for _ in range(5)]
    after = SubjectKeyer._key.cache_info()

    assert again == [first] * 5
    assert after.hits - before.hits == 5
    assert after.misses == before.misses
    # the same number written differently is another cache entry but the same subject key
    assert keyer.key(IdentifierKind.PHONE, "+358401234567") == first
    assert keyer.key(IdentifierKind.PHONE, None) is None

from __future__ import annotations

import json
from datetime import UTC, datetime

from faust.serializers import codecs
from hypothesis import given
from hypothesis import strategies as st

from streams.consent_state import (
    CONTACT,
    COOKIE_ANALYTICS,
    EMPTY,
    GEOLOCATION,
    OBJECTED,
    RESTRICTED,
    ConsentChange,
    SubjectConsent,
    apply,
    from_millis,
    from_stored,
    join,
    merge,
    to_millis,
    to_stored,
)

NAMES = st.sampled_from([CONTACT, COOKIE_ANALYTICS, GEOLOCATION, "call_recording"])
TIMES = st.integers(min_value=0, max_value=50)  # few distinct times: ties happen often
CHANGES = st.builds(
    ConsentChange,
    at=TIMES,
    statements=st.dictionaries(NAMES, st.booleans(), max_size=3),
    flags=st.dictionaries(st.sampled_from([RESTRICTED, OBJECTED]), st.booleans(), max_size=2),
)


def _fold(changes: list[ConsentChange]) -> SubjectConsent:
    state = EMPTY
    for change in changes:
        state = apply(state, change)
    return state


@given(st.lists(CHANGES, max_size=8), st.randoms())
def test_the_order_of_changes_does_not_matter(changes: list[ConsentChange], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(changes)
    rnd.shuffle(shuffled)
    assert _fold(changes) == _fold(shuffled)


@given(st.lists(CHANGES, max_size=6))
def test_replaying_changes_changes_nothing(changes: list[ConsentChange]) -> None:
    state = _fold(changes)
    assert _fold(changes + changes) == state
    assert join(state, state) == state


@given(st.lists(CHANGES, max_size=5), st.lists(CHANGES, max_size=5))
def test_merging_two_keys_knows_what_both_know(a: list[ConsentChange], b: list[ConsentChange]) -> None:
    assert merge([_fold(a), _fold(b)]) == _fold(a + b) == merge([_fold(b), _fold(a)])


@given(st.lists(CHANGES, max_size=8))
def test_state_survives_the_changelog_json(changes: list[ConsentChange]) -> None:
    state = _fold(changes)
    assert SubjectConsent.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert from_stored(to_stored(state)) == state


@given(st.lists(CHANGES, max_size=8))
def test_the_stored_bytes_are_what_fausts_json_codec_wrote_before(changes: list[ConsentChange]) -> None:
    # the table held to_json() dicts through faust's json codec until it held bytes:
    # changelogs written then must read the same now
    state = _fold(changes)
    written_before = codecs.dumps("json", state.to_json())
    assert to_stored(state) == written_before
    assert from_stored(written_before) == state


def test_no_entry_is_the_empty_state() -> None:
    assert from_stored(None) is EMPTY


@given(st.lists(CHANGES, max_size=8))
def test_withdrawn_at_is_the_latest_withdrawal(changes: list[ConsentChange]) -> None:
    state = _fold(changes)
    for name in (CONTACT, COOKIE_ANALYTICS, GEOLOCATION):
        withdrawals = [c.at for c in changes if c.statements.get(name) is False]
        assert state.withdrawn_at.get(name) == (max(withdrawals) if withdrawals else None)


def test_a_withdrawal_covers_what_was_collected_before_it() -> None:
    state = apply(apply(EMPTY, ConsentChange(10, {CONTACT: True})), ConsentChange(20, {CONTACT: False}))
    assert state.withdrawn_since(CONTACT, 15)  # collected at 15, withdrawn at 20
    assert state.withdrawn_since(CONTACT, 20)  # the same moment counts as covered
    assert not state.withdrawn_since(CONTACT, 21)  # collected after: a fresh consent
    assert state.current[CONTACT].value is False
    # given again later: the earlier withdrawal still covers older data
    state = apply(state, ConsentChange(30, {CONTACT: True}))
    assert state.current[CONTACT].value is True and state.withdrawn_since(CONTACT, 15)


def test_on_a_tie_the_withdrawal_and_the_restriction_win() -> None:
    given_first = apply(apply(EMPTY, ConsentChange(5, {CONTACT: True})), ConsentChange(5, {CONTACT: False}))
    withdrawn_first = apply(apply(EMPTY, ConsentChange(5, {CONTACT: False})), ConsentChange(5, {CONTACT: True}))
    assert given_first == withdrawn_first and given_first.current[CONTACT].value is False
    flags = apply(apply(EMPTY, ConsentChange(5, flags={RESTRICTED: True})), ConsentChange(5, flags={RESTRICTED: False}))
    assert flags.restricted and not flags.objected


def test_changes_from_raw_events() -> None:
    moment = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    consent = ConsentChange.from_consent_changed(
        {"event_time": moment, "purpose": "CONTACT_DETAILS", "status": "WITHDRAWN"}
    )
    assert consent == ConsentChange(to_millis(moment), {CONTACT: False})
    assert (
        ConsentChange.from_consent_changed({"event_time": moment, "purpose": "UNKNOWN", "status": "GIVEN"}).statements
        == {}
    )
    cookie = ConsentChange.from_cookie_consent_changed(
        {
            "event_time": moment,
            "cookie_consent": {"functional": True, "analytics": False, "marketing": False},
            "geolocation_permission": True,
        }
    )
    assert cookie.statements == {
        "cookie.functional": True,
        "cookie.analytics": False,
        "cookie.marketing": False,
        GEOLOCATION: True,
    }
    assert from_millis(to_millis(moment)) == moment

"""The traffic simulator's pure core: deterministic, valid, realistic, as mixed as configured."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.avro_json import check_record, to_jsonable
from pipeline.event_producer import EventEncoder, encode_json_line
from pipeline.exceptions import ConfigError
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.subject_keys import SubjectKeyer
from pipeline.topics import by_name
from records.simulate import EncodeOnly, SimulatedEvent, SimulationConfig, TrafficMix, event_line, generate, run
from records.simulate.model import (
    APP_CHAT,
    CALL_DETAIL_RECORD,
    CALL_RECORDING,
    CHAT_CONVERSATION,
    CONSENT_CHANGED,
    COOKIE_CONSENT_CHANGED,
    DETAILS_WITHOUT_CONSENT,
    KINDS,
    LOCATION_WITHOUT_PERMISSION,
    MALFORMED,
    MALFORMED_HEADER,
    MALFORMED_KINDS,
    NOTICE_AFTER_START,
    RAW_TOPICS,
    RECORDING_OUTSIDE_CALL,
    RECORDING_WITHOUT_NOTICE,
    WEB_CHAT,
    WITHHELD_CALLER,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
CONFIG = SimulationConfig(events=4000, seed=11, now=NOW)
DECODE = AvroDeserializer()
SERIALIZERS = {name: AvroSerializer(name) for name in {schema for schema, _ in KINDS.values() if schema}}


@cache
def _events(config: SimulationConfig = CONFIG) -> tuple[SimulatedEvent, ...]:
    return tuple(generate(config))


def _records(schema: str) -> list[dict[str, Any]]:
    return [e.record for e in _events() if e.schema_name == schema and e.record is not None]


def _timestamps(value: Any) -> Iterator[datetime]:
    if isinstance(value, datetime):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _timestamps(item)
    elif isinstance(value, list):
        for item in value:
            yield from _timestamps(item)


def test_the_same_config_gives_the_same_events_ids_and_times_included() -> None:
    assert tuple(generate(CONFIG)) == _events()
    other_seed = tuple(generate(dataclasses.replace(CONFIG, seed=12)))
    assert {e.record["event_id"] for e in other_seed if e.record} & {
        e.record["event_id"] for e in _events() if e.record
    } == set()


def test_a_later_now_shifts_the_times_only() -> None:
    later = tuple(itertools.islice(generate(dataclasses.replace(CONFIG, now=NOW + timedelta(days=1))), 200))
    first = _events()[:200]
    assert [e.kind for e in later] == [e.kind for e in first]
    assert [e.record["event_id"] for e in later if e.record] == [e.record["event_id"] for e in first if e.record]
    shifted = [
        e.record["event_time"] - f.record["event_time"]
        for e, f in zip(later, first, strict=True)
        if e.record and f.record
    ]
    assert all(timedelta(hours=23) < delta < timedelta(hours=25) for delta in shifted)


def test_every_record_fits_its_schema_and_survives_the_wire() -> None:
    for event in _events():
        if event.record is None:
            continue
        assert event.schema_name is not None
        assert event.topic == KINDS[event.kind][1] == by_name(event.topic).name
        assert check_record(SERIALIZERS[event.schema_name].schema, event.record) == []
        decoded = DECODE(SERIALIZERS[event.schema_name](event.record))
        assert decoded.schema_name == event.schema_name
        assert to_jsonable(decoded.value) == to_jsonable(event.record)


@given(st.integers(min_value=0, max_value=2**63))
@settings(max_examples=15, deadline=None)
def test_any_seed_gives_encodable_records(seed: int) -> None:
    for event in generate(SimulationConfig(events=150, seed=seed, now=NOW)):
        if event.record is not None:
            assert event.schema_name is not None
            SERIALIZERS[event.schema_name](event.record)


def test_the_mix_is_as_configured() -> None:
    config = SimulationConfig(events=20_000, seed=5, now=NOW)
    counts = Counter(e.kind for e in generate(config))
    assert sum(counts.values()) == 20_000
    for kind, share in config.mix.shares().items():
        assert counts[kind] / 20_000 == pytest.approx(share, abs=0.012), kind


def test_a_custom_mix_is_followed() -> None:
    mix = TrafficMix(
        web_chat=0.0,
        app_chat=0.5,
        call=0.2,
        recording=0.0,
        consent=0.2,
        cookie_consent=0.0,
        malformed=0.1,
        contact_form=0.0,
    )
    counts = Counter(e.kind for e in generate(SimulationConfig(events=3000, seed=1, now=NOW, mix=mix)))
    assert set(counts) == {APP_CHAT, "call", "consent", MALFORMED}
    assert counts[MALFORMED] / 3000 == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize(
    "changes",
    [
        {"web_chat": 0.5},  # shares no longer sum to 1
        {"call": 0.05, "web_chat": 0.55},  # more recordings than answered inbound calls
        {"answered": 1.5},
    ],
)
def test_an_impossible_mix_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TrafficMix(**changes)


def test_malformed_messages_of_every_kind_fail_to_decode() -> None:
    mix = TrafficMix(web_chat=0.24, malformed=0.06)
    malformed = [e for e in generate(SimulationConfig(events=3000, seed=2, now=NOW, mix=mix)) if e.malformed]
    kinds = Counter(dict(e.headers)[MALFORMED_HEADER].decode() for e in malformed)
    assert set(kinds) == set(MALFORMED_KINDS)
    for event in malformed:
        assert event.raw is not None and event.record is None and event.key
        assert event.topic in RAW_TOPICS
        with pytest.raises(SerdeError):
            DECODE(event.raw)


def test_every_timestamp_lies_in_the_span_and_the_span_is_used() -> None:
    start, end = CONFIG.window
    event_times = []
    for event in _events():
        if event.record is not None:
            assert all(start <= moment <= end for moment in _timestamps(event.record))
            event_times.append(event.record["event_time"])
    span = end - start
    assert min(event_times) < start + span * 0.01 and max(event_times) > end - span * 0.01
    assert min(event_times) < NOW - timedelta(days=730), "older than the longest retention (2 years)"
    assert sum(t > NOW - timedelta(days=90) for t in event_times) > 100, "some are within every retention"


def test_conversations_and_calls_are_internally_consistent() -> None:
    for chat in _records(CHAT_CONVERSATION):
        sent = [m["sent_at"] for m in chat["messages"]]
        assert len(sent) in range(1, 9)
        assert chat["started_at"] <= sent[0] and sent == sorted(sent) and sent[-1] <= chat["ended_at"]
        assert chat["event_time"] == chat["ended_at"] <= chat["produced_at"]
        agents = {m["agent_username"] for m in chat["messages"] if m["sender"] == "AGENT"}
        assert None not in agents and len(agents) <= 1
    for call in _records(CALL_DETAIL_RECORD):
        assert call["started_at"] < call["ended_at"] == call["event_time"]
        if call["answered_at"] is not None:
            assert call["started_at"] < call["answered_at"] < call["ended_at"] and call["answered_by_user"]
    calls = {c["call_id"]: c for c in _records(CALL_DETAIL_RECORD)}
    for event in _events():
        recording = event.record
        if event.schema_name != CALL_RECORDING or recording is None:
            continue
        call = calls[recording["call_id"]]  # each recording follows its call
        within = (recording["recording_started_at"], recording["recording_ended_at"]) == (
            call["answered_at"],
            call["ended_at"],
        )
        assert within is (RECORDING_OUTSIDE_CALL not in event.tags)  # answer to hang-up, or tagged (notice §5)
        assert recording["caller_number"] == call["caller_number"]


def test_phone_numbers_are_valid_finnish_and_foreign_ones() -> None:
    numbers = [c["phone"] for c in _records(CHAT_CONVERSATION) if c["phone"]]
    numbers += [c["caller_number"] for c in _records(CALL_DETAIL_RECORD) if c["caller_number"] != "anonymous"]
    numbers += [c["subject"]["phone"] for c in _records(CONSENT_CHANGED) if c["subject"]["phone"]]
    parsed = [phonenumbers.parse(number, "FI") for number in numbers]
    assert all(phonenumbers.is_valid_number(number) for number in parsed)
    countries = Counter(number.country_code for number in parsed)
    assert countries[358] > 0.7 * len(parsed) and len(countries) >= 5
    assert any(not n.startswith("+") for n in numbers), "some are typed in the national format"


def test_people_recur_across_chats_calls_and_consent_changes() -> None:
    chat_emails = Counter(c["email"] for c in _records(CHAT_CONVERSATION) if c["email"])
    consent_emails = {c["subject"]["email"] for c in _records(CONSENT_CHANGED)}
    assert chat_emails.most_common(1)[0][1] >= 5
    assert len(set(chat_emails) & consent_emails) >= 20
    chat_phones = {
        phonenumbers.format_number(phonenumbers.parse(c["phone"], "FI"), 0)
        for c in _records(CHAT_CONVERSATION)
        if c["phone"]
    }
    callers = {c["caller_number"] for c in _records(CALL_DETAIL_RECORD)}
    assert len(chat_phones & callers) >= 20
    names = {c["name"] for c in _records(CHAT_CONVERSATION) if c["name"]}
    assert any(set(name) & set("äöå") for name in names) and any(name.isascii() for name in names)


def test_tags_mark_exactly_what_enforcement_must_catch() -> None:
    tagged: Counter[str] = Counter()
    for event in _events():
        tagged.update(event.tags)
        record = event.record
        if event.kind == WEB_CHAT and record is not None:
            details = record["email"] is not None
            assert (DETAILS_WITHOUT_CONSENT in event.tags) == (details and not record["contact_consent"])
            located = record["latitude"] is not None
            assert (LOCATION_WITHOUT_PERMISSION in event.tags) == (located and not record["geolocation_permission"])
            assert record["contact_consent_text_id"] is not None or not record["contact_consent"]
        if event.schema_name == CALL_RECORDING and record is not None:
            notice, started = record["notice_played_at"], record["recording_started_at"]
            assert (RECORDING_WITHOUT_NOTICE in event.tags) == (notice is None)
            assert (NOTICE_AFTER_START in event.tags) == (notice is not None and notice > started)
        if event.schema_name == CALL_DETAIL_RECORD and record is not None:
            assert (WITHHELD_CALLER in event.tags) == (record["caller_number"] == "anonymous")
    assert all(
        tagged[tag] > 0 for tag in (DETAILS_WITHOUT_CONSENT, LOCATION_WITHOUT_PERMISSION, RECORDING_WITHOUT_NOTICE)
    )
    web = [e.record for e in _events() if e.kind == WEB_CHAT and e.record is not None]
    assert any(c["contact_consent"] and c["email"] for c in web)
    assert any(c["contact_consent"] and c["email"] is None for c in web), "consent given, no details entered"
    assert any(not c["contact_consent"] and c["email"] is None for c in web)


def test_every_cookie_banner_combination_occurs() -> None:
    def combos(schema: str) -> set[tuple[bool, ...]]:
        return {tuple(r["cookie_consent"].values()) for r in _records(schema)}

    assert len(combos(COOKIE_CONSENT_CHANGED)) == 8
    assert len({c for c in combos(CHAT_CONVERSATION)}) == 8


def test_app_chats_carry_the_login_profile_and_web_chats_the_visitor() -> None:
    chats = _records(CHAT_CONVERSATION)
    app = [c for c in chats if c["channel"] == "MYSTAFF_APP"]
    web = [c for c in chats if c["channel"] == "WEB"]
    assert app and web
    assert all(c["person_number"] and c["app_username"] and c["app_name"] == "myStaff" for c in app)
    assert all(c["visitor_id"] is None and c["latitude"] is None for c in app)
    assert sum(c["postal_address"] is not None for c in app) > 0.7 * len(app)
    assert all("myStaff/" + c["app_version"] in c["user_agent"] for c in app)
    assert all(c["visitor_id"] and c["person_number"] is None and c["user_agent"] and c["ip_address"] for c in web)
    agents = {c["user_agent"] for c in web}
    for device in ("Windows NT", "iPhone", "Android", "Macintosh", "iPad"):
        assert any(device in agent for agent in agents), device
    assert any(":" in c["ip_address"] for c in web), "some IPv6 addresses"


def test_simulated_lines_are_valid_produce_input() -> None:
    encoder = EventEncoder(keyer=SubjectKeyer(bytes(32)))
    for event in _events()[:300]:
        line = json.dumps(event_line(event))
        if event.record is None:
            assert json.loads(line)["_malformed"] in MALFORMED_KINDS
            continue
        encoded = encode_json_line(line, by_name(event.topic), encoder)
        assert to_jsonable(DECODE(encoded.value).value) == to_jsonable(event.record)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None]] = []
        self.polls = 0

    def send(self, schema: str, record: Any) -> int:
        self.sent.append((schema, None))
        return 100

    def send_raw(self, topic: str, value: bytes, *, key: Any = None, headers: Any = None) -> int:
        self.sent.append((topic, dict(headers or [])[MALFORMED_HEADER].decode()))
        return len(value)

    def poll(self) -> None:
        self.polls += 1


def test_run_sends_every_event_and_counts_it() -> None:
    sink = _Recorder()
    progress: list[int] = []
    stats = run(_events(), sink, on_progress=progress.append, progress_every=1000, poll_every=500)
    assert stats.events == len(sink.sent) == 4000
    assert stats.by_kind == Counter(e.kind for e in _events())
    assert sum(stats.malformed.values()) == stats.by_kind[MALFORMED] > 0
    assert sum(stats.by_topic.values()) == 4000 and set(stats.by_topic) == set(RAW_TOPICS)
    assert progress == [1000, 2000, 3000, 4000, 4000] and sink.polls == 8


def test_run_keeps_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    stats = run(_events()[:50], _Recorder(), rate=100.0, clock=lambda: now[0], sleep=sleep)
    assert stats.seconds == pytest.approx(0.5, abs=0.011)


def test_a_dry_run_encodes_like_the_producer() -> None:
    stats = run(_events()[:500], EncodeOnly(EventEncoder(keyer=SubjectKeyer(bytes(32)))))
    assert stats.events == 500 and 200 < stats.bytes_per_event < 1500


def test_no_events_is_a_valid_run() -> None:
    assert list(generate(SimulationConfig(events=0, now=NOW))) == []


def test_contact_forms_are_a_few_percent_of_people_who_also_call_and_some_lack_the_forms_consent() -> None:
    forms = [e for e in _events() if e.kind == "contact_form"]
    assert 0.015 < len(forms) / len(_events()) < 0.05
    for event in forms:
        record = event.record
        assert record is not None and event.topic == "cs.contact-form.v1"
        assert (DETAILS_WITHOUT_CONSENT in event.tags) == (
            record["email"] is not None and not record["contact_consent"]
        )
        assert record["submitted_at"] <= record["event_time"] <= record["produced_at"]
        assert record["message"] and record["page_url"].startswith("https://")
    assert any(DETAILS_WITHOUT_CONSENT in e.tags for e in forms)
    assert sum(1 for e in forms if e.record and e.record["contact_consent"]) > len(forms) / 2
    callers = {c["caller_number"] for c in _records(CALL_DETAIL_RECORD)}
    form_phones = {
        phonenumbers.format_number(phonenumbers.parse(e.record["phone"], "FI"), 0)
        for e in forms
        if e.record and e.record["phone"]
    }
    assert form_phones & callers, "an erasure by phone reaches a caller's forms"

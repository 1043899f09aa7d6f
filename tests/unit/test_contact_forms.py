"""Contact forms (issue 13): their schema, topic and key, the row the streams stage builds
(enforced like a web chat), the worker's routing, the storage model and the report's
controller-set retention. No broker, no engine."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.clickhouse_ddl import table_models
from pipeline.dead_letter import parse_headers
from pipeline.event_producer import event_key
from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from retention_jobs.report import evaluate
from retention_jobs.report_evidence import Evidence, KafkaEvidence, RecordAges, TopicEvidence
from streams.app import StreamsWorker, _Batch, _now
from streams.consent_state import EMPTY, RESTRICTED, ConsentChange, ConsentStatement, SubjectConsent, apply, to_millis
from streams.exceptions import InvalidEvent
from streams.row_types import H_RESTRICTED
from streams.rows import RowBuilder
from tests.support.contact_forms import T0, form_event
from tests.support.streams_worker import streams_worker

KEYER = SubjectKeyer(bytes(range(32)))
POLICY = default_policy()
FORM = "cs.records.ContactFormSubmitted"
EMAIL_KEY = KEYER.key(IdentifierKind.EMAIL, "maija.meikalainen@example.fi")
PHONE_KEY = KEYER.key(IdentifierKind.PHONE, "+358401234567")


def _build(event: dict[str, Any], tracked: SubjectConsent = EMPTY) -> Any:
    return RowBuilder(KEYER, POLICY).build(FORM, event, lambda keys: tracked, T0 + timedelta(minutes=1))


def test_a_form_has_its_own_raw_topic_and_is_keyed_by_its_submission_id() -> None:
    assert topics.topic_for_schema(FORM) is topics.CONTACT_FORM
    assert topics.CONTACT_FORM.partitions == topics.CHAT.partitions
    assert topics.topic_for_schema("cs.records.ContactFormRecord") is topics.CONTACT_FORM_ENRICHED
    assert event_key("ContactFormSubmitted", form_event("sub-9"), KEYER) == "sub-9"


def test_a_consented_form_is_stored_normalised_with_the_subject_keys_of_email_and_phone() -> None:
    outcome = _build(form_event("sub-1"))
    form, subject = outcome.rows
    assert (form.topic, form.key, form.schema) == (
        topics.CONTACT_FORM_ENRICHED.name,
        "sub-1",
        "cs.records.ContactFormRecord",
    )
    row = form.value
    assert (row["email"], row["phone"], row["name"]) == (
        "maija.meikalainen@example.fi",
        "+358401234567",
        "Maija Meikäläinen",
    )
    assert set(row["subject_keys"]) == {EMAIL_KEY, PHONE_KEY}
    assert row["contact_consent"] and row["marketing_consent"] and row["stripped"] == []
    assert row["expires_at"] == T0 + timedelta(days=180)
    assert subject.topic == topics.SUBJECTS.name and subject.value["email"] == row["email"]
    # the record the sink writes: it encodes with the table's schema
    assert AvroDeserializer()(AvroSerializer("ContactFormRecord")(row)).value["submission_id"] == "sub-1"


def test_contact_details_without_the_forms_consent_are_stripped_and_the_message_kept() -> None:
    outcome = _build(form_event("sub-2", contact_consent=False, marketing_consent=False))
    (form,) = outcome.rows  # no identifier survives: no SubjectRecord
    row = form.value
    assert (row["name"], row["email"], row["phone"], row["company_name"]) == (None, None, None, None)
    assert sorted(row["stripped"]) == sorted(
        f"{f}:no_contact_consent" for f in ("name", "email", "phone", "company_name")
    )
    assert row["subject_keys"] == [] and not row["contact_consent"]
    assert row["message"].startswith("Tarvitsisimme")
    assert Counter(s.record_type for s in outcome.stripped) == {"contact_form": 4}


def test_a_withdrawal_after_the_form_strips_it_and_a_restriction_travels_as_a_header() -> None:
    later = to_millis(T0 + timedelta(hours=1))
    tracked = apply(EMPTY, ConsentChange(later, {"contact_consent": False}))
    tracked = replace(tracked, flags={RESTRICTED: ConsentStatement(True, later)})
    (form,) = _build(form_event("sub-3"), tracked).rows
    assert form.value["email"] is None and "email:consent_withdrawn" in form.value["stripped"]
    assert (H_RESTRICTED, b"1") in form.headers


def test_an_unreadable_phone_is_removed_and_a_blank_submission_id_is_invalid() -> None:
    (form, _subject) = _build(form_event("sub-4", phone="12")).rows
    assert form.value["phone"] is None and "phone:invalid_phone" in form.value["stripped"]
    assert form.value["subject_keys"] == [EMAIL_KEY]
    with pytest.raises(InvalidEvent, match=r"ContactFormSubmitted\.submission_id is empty"):
        _build(form_event(" "))


def test_the_erasure_scope_names_the_forms_identifiers_and_its_submission_time() -> None:
    keys, moment = RowBuilder(KEYER, POLICY).erasure_scope(FORM, form_event(contact_consent=False))
    assert set(keys) == {EMAIL_KEY, PHONE_KEY}  # stripped or not, they say whose form it is
    assert moment == to_millis(T0)


@pytest.fixture
def worker(tmp_path: Path) -> tuple[StreamsWorker, CollectorRegistry]:
    return streams_worker(tmp_path, KEYER)


def _message(topic: str, value: bytes, offset: int = 3) -> Any:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"k", value=value, headers=[], timestamp=None)


def test_the_worker_reads_forms_and_dead_letters_a_bad_one(worker: tuple[StreamsWorker, CollectorRegistry]) -> None:
    app, registry = worker
    encode = AvroSerializer("ContactFormSubmitted")
    batch = _Batch(_now())
    good = form_event("sub-5", at=batch.now - timedelta(days=1))
    bad = form_event("", at=batch.now - timedelta(days=1))
    for offset, value in enumerate((encode(good), encode(bad))):
        app._process(_message(topics.CONTACT_FORM.name, value, offset), batch)
    app._process(_message(topics.CHAT.name, encode(good), 9), batch)  # a form does not belong on the chat topic
    app._count(batch)
    assert [out.topic for out in batch.sends] == [
        topics.CONTACT_FORM_ENRICHED.name,
        topics.SUBJECTS.name,
        topics.DLQ.name,
        topics.DLQ.name,
    ]
    reasons = [parse_headers(out.headers)["dlq.error"] for out in batch.sends[2:]]
    assert reasons == [
        "ContactFormSubmitted.submission_id is empty",
        f"{FORM} does not belong on {topics.CHAT.name}",
    ]
    labels = {"topic": topics.CONTACT_FORM_ENRICHED.name, "schema": "cs.records.ContactFormRecord"}
    assert registry.get_sample_value("records_streams_events_out_total", labels) == 1


def test_the_table_expires_rows_after_the_policy_and_the_analyst_view_holds_no_identifier() -> None:
    model = next(m for m in table_models(POLICY) if m.name == "contact_forms")
    assert "TTL `submitted_at` + INTERVAL 180 DAY DELETE" in model.create_table()
    assert model.has_subject_keys
    view = model.create_analyst_view()
    for column in ("name", "email", "phone", "subject_keys", "source_event_id"):
        assert f"`{column}`" not in view.split("FROM")[0]
    assert "length(`message`) AS `message_length`" in view
    assert "subject_restrictions" in view


def _evidence(**overrides: Any) -> Evidence:
    """Evidence of a deployment with every table and topic, 3 rows of each record type."""
    models = table_models(POLICY)
    values: dict[str, Any] = {
        "collected_at": T0,
        "storage": "test",
        "ages": {
            m.record.record_type: RecordAges(m.record.record_type, 3, 0, 20.0, 15, (3,) + (0,) * 11) for m in models
        },
        "record_columns": {m.name: tuple(c.name for c in m.columns) for m in models},
        "analyst_columns": {},
        "analyst_restriction_filter": {},
        "stripped": {},
        "consent_breaches": (),
        "recordings_without_prior_notice": 0,
        "dsr": (),
        "erasure_latency_edges_s": (1,),
        "erasure_latency_histogram": (0, 0),
        "erased_subjects": 0,
        "rows_surviving_erasure": {},
        "active_restrictions": 0,
        "kafka": KafkaEvidence(topics=tuple(TopicEvidence(t.name, t.personal_data, True) for t in topics.ALL_TOPICS)),
    }
    values.update(overrides)
    return Evidence(**values)


def test_the_report_shows_the_form_retention_as_set_by_the_controller() -> None:
    record = POLICY.record("contact_form")
    assert (record.retention_days, record.retention_set_by) == (180, "controller")
    assert POLICY.record("chat_conversation").retention_set_by == "notice"
    report = evaluate(POLICY, _evidence())
    line = report.line("retention.contact_form")
    assert line.passed and line.notice == "controller"
    assert "limit 180 days (set by the controller; the notice states none)" in line.evidence
    assert report.line("retention.chat_conversation").notice == "§8"
    assert "controller" not in report.line("retention.chat_conversation").evidence
    assert report.to_dict()["record_ages"]["contact_form"]["limit_set_by"] == "controller"


def test_the_sources_line_of_section_4_needs_the_form_topic_and_table() -> None:
    line = evaluate(POLICY, _evidence()).line("sources")
    assert line.passed and line.notice == "§4"
    assert "contact form: cs.contact-form.v1 -> contact_forms 3 rows" in line.details
    columns = {name: cols for name, cols in _evidence().record_columns.items() if name != "contact_forms"}
    no_table = evaluate(POLICY, _evidence(record_columns=columns)).line("sources")
    assert not no_table.passed and no_table.evidence == "contact form: table contact_forms missing"
    live = tuple(TopicEvidence(t.name, t.personal_data, t is not topics.CONTACT_FORM) for t in topics.ALL_TOPICS)
    no_topic = evaluate(POLICY, _evidence(kafka=KafkaEvidence(topics=live))).line("sources")
    assert not no_topic.passed and "topic cs.contact-form.v1 missing" in no_topic.evidence


def test_a_form_older_than_an_erasure_of_its_sender_is_dropped_and_a_newer_one_kept(
    worker: tuple[StreamsWorker, CollectorRegistry],
) -> None:
    app, registry = worker
    batch = _Batch(_now())
    erased_at = batch.now - timedelta(days=1)
    assert EMAIL_KEY is not None
    app.erasures.data[EMAIL_KEY.encode()] = to_millis(erased_at)  # as if restored from the changelog
    encode = AvroSerializer("ContactFormSubmitted")
    # stripped or not, the email says whose form it is
    before = form_event("sub-old", at=erased_at - timedelta(hours=1), contact_consent=False, phone=None)
    after = form_event("sub-new", at=erased_at + timedelta(hours=1), phone=None)
    for offset, form in enumerate((before, after)):
        app._process(_message(topics.CONTACT_FORM.name, encode(form), offset), batch)
    app._count(batch)
    assert [(out.topic, out.key) for out in batch.sends] == [
        (topics.CONTACT_FORM_ENRICHED.name, b"sub-new"),
        (topics.SUBJECTS.name, EMAIL_KEY.encode()),
    ]
    labels = {"topic": topics.CONTACT_FORM.name, "schema": FORM}
    assert registry.get_sample_value("records_streams_erased_dropped_total", labels) == 1

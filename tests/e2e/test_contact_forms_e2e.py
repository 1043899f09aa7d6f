"""Contact forms end to end (issue 13): a ContactFormSubmitted on cs.contact-form.v1 ->
`records worker streams` (enforcement, subject keys) -> `records worker sink` ->
records.contact_forms and analyst.contact_forms; then every data-subject request the DPO
issues with `records dsr ...` reaches the form (restriction, objection, export,
rectification, consent withdrawal, erasure), and `records reconcile`'s reader accounts
for every form event.

On the real topics of the shared broker: both workers run under consumer groups of their
own, committed at the end of their inputs first (tests/support/dpo_pipeline.py); the person's identifiers are unique to
the run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import topics
from pipeline.config import load_settings
from pipeline.serde import Serde
from records.reconcile_read import Sources, reconcile_window
from tests.support.contact_forms import form_event
from tests.support.dpo_pipeline import DpoPipeline, unique_number, wait_for
from tests.support.streams_traffic import Traffic
from tests.support.worker_secrets import KEYER

pytestmark = pytest.mark.kafka

IDENTIFIERS = ("name", "email", "phone", "subject_keys", "source_event_id")


def test_a_form_is_stored_enforced_and_every_request_reaches_it(
    kafka_bootstrap: str, dpo_line: DpoPipeline, chdb_path: Path
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    n = unique_number()
    tag = f"forms-e2e-{n}"
    email, phone = f"Form.E2E.{n}@Example.FI", f"040 {n}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    consented = form_event(f"{tag}-a", at=at, email=email, phone=phone)
    # another person's form without the consent: nothing of it names anyone once stored
    refused = form_event(f"{tag}-b", at=at, email=f"other.{n}@example.fi", phone=f"045 {n}", contact_consent=False)
    traffic = Traffic(kafka_bootstrap, tag)
    for form in (consented, refused):
        sid = form["submission_id"]
        traffic.avro(sid, topics.CONTACT_FORM.name, sid, "ContactFormSubmitted", form)
    traffic.flush()

    def stored(sid: str) -> dict[str, Any] | None:
        result = dpo_line.client.query(
            "SELECT * FROM records.contact_forms FINAL WHERE submission_id = {s:String}", parameters={"s": sid}
        )
        rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        return rows[0] if rows else None

    def visible(sid: str) -> int:
        query = "SELECT count() FROM analyst.contact_forms WHERE submission_id = {s:String}"
        return int(dpo_line.client.query(query, parameters={"s": sid}).result_rows[0][0])

    wait_for(
        lambda: stored(f"{tag}-a") is not None and stored(f"{tag}-b") is not None,
        120,
        lambda: f"the forms never arrived\n{dpo_line.streams.log()[-2000:]}",
    )

    # enforcement: normalised identifiers with consent, none without it; the message kept
    kept, stripped = stored(f"{tag}-a"), stored(f"{tag}-b")
    assert kept is not None and stripped is not None
    assert (kept["email"], kept["phone"]) == (email.lower(), f"+35840{n}")
    assert len(kept["subject_keys"]) == 2 and kept["contact_consent"]
    assert (stripped["name"], stripped["email"], stripped["phone"], stripped["subject_keys"]) == (None,) * 3 + ([],)
    assert "email:no_contact_consent" in stripped["stripped"] and stripped["message"] == refused["message"]
    # analysts: no identifier, the message's length only
    columns = [r[0] for r in dpo_line.client.query("DESCRIBE TABLE analyst.contact_forms").result_rows]
    assert not set(columns) & {*IDENTIFIERS, "message"} and "message_length" in columns
    assert visible(f"{tag}-a") == 1

    def run(*args: str) -> dict[str, Any]:
        issued = dpo_line.issue(*args, reason="TICKET-FORMS", verified_by="in_person")
        receipt = issued.receipt
        assert receipt["status"] == "COMPLETED", receipt
        assert email.lower() not in issued.status.stdout
        return receipt

    run("restrict", "--email", email)
    assert visible(f"{tag}-a") == 0, "a restricted subject's forms are hidden from analysts"
    run("unrestrict", "--email", email)
    assert visible(f"{tag}-a") == 1
    run("object", "--phone", phone)
    assert visible(f"{tag}-a") == 0, "an objecting subject's forms are hidden from analysts"
    run("unrestrict", "--phone", phone)
    assert visible(f"{tag}-a") == 1

    export = run("export", "--phone", phone)
    assert export["store_counts"]["records.contact_forms"] == 1
    (exported,) = (chdb_path.parent / "data" / "exports").glob(f"{export['request_id']}.json")
    assert f"{tag}-a" in exported.read_text() and f"{tag}-b" not in exported.read_text()

    run("rectify", "--email", email, "--field", "name", "--value", "Maija Virtanen")
    assert stored(f"{tag}-a")["name"] == "Maija Virtanen"  # type: ignore[index]
    corrected_phone = f"050 {n}"
    run("rectify", "--email", email, "--field", "phone", "--value", corrected_phone)
    assert stored(f"{tag}-a")["phone"] == f"+35850{n}"  # type: ignore[index]
    found = run("export", "--phone", corrected_phone)
    assert found["store_counts"]["records.contact_forms"] == 1, "the corrected phone finds the form"

    run("withdraw-consent", "--email", email, "--purpose", "CONTACT_DETAILS")
    wait_for(
        lambda: stored(f"{tag}-a")["company_name"] is None,  # type: ignore[index]
        60,
        lambda: "the form's contact details were not cleared after the withdrawal",
    )
    assert "company_name:consent_withdrawn" in stored(f"{tag}-a")["stripped"]  # type: ignore[index]

    erased = run("erase", "--email", email)
    assert erased["store_counts"]["records.contact_forms"] == 1
    assert stored(f"{tag}-a") is None
    assert stored(f"{tag}-b") is not None, "another person's form stays"

    # the reconciliation accounts for both form events: one erased, one stored (stripped)
    settings = load_settings({"KAFKA_BOOTSTRAP": kafka_bootstrap})
    result = reconcile_window(
        settings.kafka,
        dpo_line.client,
        serde=Serde(),
        keyer=KEYER,
        since=since,
        now=datetime.now(UTC),
        sources=Sources(raw_topics=(topics.CONTACT_FORM.name,), key_prefix=tag.encode()),
    )
    assert len(result.events) == 2 and result.balanced, result.to_dict()
    assert (result.counts["erased"], result.counts["stored"], result.stripped) == (1, 1, 1)

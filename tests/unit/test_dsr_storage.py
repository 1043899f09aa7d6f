"""The pure core of the sink's DSR work: command headers, the statements each request
type runs, receipts, the order of execution and the export document. No Kafka, no
ClickHouse (tests/integration/test_dsr_storage.py runs the statements on the engine)."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.clickhouse_ddl import table_models
from pipeline.dsr import RequestType
from pipeline.dsr_contract import CommandEnvelope, Receipt, ReceiptStatus
from pipeline.policy import default_policy
from pipeline.schemas import default_catalog
from pipeline.serde import AvroDeserializer, AvroSerializer
from sink.dsr_commands import _runs
from sink.dsr_export import document, export_path, write_export
from sink.dsr_storage import (
    DsrCommand,
    DsrCommandError,
    count_query,
    erase_mutation,
    erasure_time,
    rectification_targets,
    rectified_value,
    rectified_versions,
    restriction_rows,
    subject_tables,
    withdrawn_count,
)
from sink.erasure_guard import ErasureGuard, erasure_filter, window_days
from sink.select_insert import select_insert_sql, structure
from tests.support.stored_records import SUBJECT_TABLES

MODELS = table_models()
BY_NAME = {m.name: m for m in MODELS}
K1, K2, K3 = "a" * 64, "b" * 64, "c" * 64
ISSUED = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)


def _command(kind: RequestType, keys: tuple[str, ...] = (K1,), **request: Any) -> DsrCommand:
    value = {"request_id": str(uuid.uuid4()), "request_type": kind.value, "issued_at": ISSUED, **request}
    return DsrCommand(value, _envelope(value, keys))


def _envelope(request: dict[str, Any], keys: tuple[str, ...], verified_at: datetime = ISSUED) -> CommandEnvelope:
    return CommandEnvelope(request["request_id"], request["request_type"], "0" * 64, keys, verified_at)


# ---- statements ---------------------------------------------------------------------------


def test_every_table_with_subject_keys_is_touched_and_only_those() -> None:
    names = [m.name for m in subject_tables(MODELS)]
    assert names == list(SUBJECT_TABLES)


def test_erasure_statements_are_one_real_mutation_for_every_subject() -> None:
    calls = BY_NAME["calls"]
    later = ISSUED + timedelta(hours=1)
    erasures = [({K2, K1}, ISSUED), ({K3}, later)]
    assert erase_mutation(calls, erasures) == (
        f"ALTER TABLE records.calls DELETE WHERE hasAny(subject_keys, ['{K1}', '{K2}', '{K3}']) AND "
        f"((hasAny(subject_keys, ['{K1}', '{K2}']) AND `ingested_at` <= "
        "toDateTime64('2026-11-28 12:00:00.123', 3, 'UTC')) OR "
        f"(hasAny(subject_keys, ['{K3}']) AND `ingested_at` <= toDateTime64('2026-11-28 13:00:00.123', 3, 'UTC')))"
    )
    query = count_query(BY_NAME["chat_messages"], erasures)
    assert query.startswith(
        f"SELECT count(), uniqExactIf(event_id, (hasAny(subject_keys, ['{K1}', '{K2}']) AND `ingested_at`"
    )
    assert "FINAL" not in query  # every stored version decides whether the table needs the mutation


def test_the_erasure_time_is_the_streams_stage_s_verification() -> None:
    command = _command(RequestType.ERASURE)
    verified = datetime(2026, 11, 28, 12, 0, 2, 345678, tzinfo=UTC)
    command = DsrCommand(command.request, _envelope(dict(command.request), (K1,), verified))
    assert erasure_time(command) == verified.replace(microsecond=345000)


def test_rectification_normalises_identifiers_and_escapes_values() -> None:
    assert rectified_value("email", " Anna.K@Example.FI ") == ("email", "anna.k@example.fi")
    assert rectified_value("phone", "040 123 4567") == ("phone", "+358401234567")
    assert rectified_value("name", "O'Brien \\ Jr") == ("name", "O'Brien \\ Jr")
    with pytest.raises(DsrCommandError, match="not a valid phone"):
        rectified_value("phone", "call me")
    with pytest.raises(DsrCommandError, match="known field"):
        rectified_value("caller_number", "+358401234567")
    assert [(m.name, c) for m, c in rectification_targets(MODELS, "email")] == [
        ("chat_conversations", "email"),
        ("contact_forms", "email"),
    ]
    assert [(m.name, c) for m, c in rectification_targets(MODELS, "phone")] == [
        ("chat_conversations", "phone"),
        ("calls", "caller_number"),
        ("call_recordings", "caller_number"),
        ("contact_forms", "phone"),
    ]
    sql, parameters = rectified_versions(BY_NAME["chat_conversations"], "name", "O'Brien \\ Jr", [K1], K3)
    # The value and the new key are parameters: no statement text holds them.
    assert parameters == {"rectified_value": "O'Brien \\ Jr", "rectified_key": K3}
    assert "Brien" not in sql and K3 not in sql
    assert sql.startswith("INSERT INTO records.chat_conversations (")
    assert sql.endswith(
        f"FROM records.chat_conversations FINAL WHERE hasAny(subject_keys, ['{K1}']) AND `name` IS NOT NULL"
    )


def test_restriction_rows_per_key_and_kind_versioned_by_the_request() -> None:
    restrict = _command(RequestType.OBJECTION, (K1, K2))
    assert restriction_rows(restrict) == [
        (K1, "OBJECTION", True, restrict.request_id, ISSUED),
        (K2, "OBJECTION", True, restrict.request_id, ISSUED),
    ]
    lift = _command(RequestType.RESTRICTION_LIFTED)
    assert [(k, kind, active) for k, kind, active, _, _ in restriction_rows(lift)] == [
        (K1, "RESTRICTION", False),
        (K1, "OBJECTION", False),
    ]
    with pytest.raises(ValueError):
        restriction_rows(_command(RequestType.ERASURE))


def test_withdrawal_counts_only_tables_with_consent_bound_fields() -> None:
    counted = {m.name for m in MODELS if m.has_subject_keys and withdrawn_count(m, [K1]) is not None}
    assert counted == {"chat_conversations", "contact_forms"}


def test_the_guard_filters_tables_with_subject_keys_within_the_longest_retention() -> None:
    assert window_days(MODELS) == 732  # 2 years at most: 2 x 366 days
    chats = BY_NAME["chat_conversations"]
    sql = select_insert_sql(chats, "input('x String')", row_filter=erasure_filter(chats, 730))
    assert sql.startswith("INSERT INTO records.chat_conversations (`event_id`, ")
    assert "FROM records.erased_keys WHERE erased_at >= now64(3) - toIntervalDay(730)" in sql
    assert sql.endswith("`ingested_at` <= erased[k], subject_keys)")
    assert structure(chats).startswith("`event_id` String, `source_event_id` String, `subject_keys` Array(String)")
    assert ErasureGuard(MODELS).row_filter(chats) == erasure_filter(chats, 732)
    assert ErasureGuard(MODELS).row_filter(BY_NAME["dsr_receipts"]) is None


# ---- receipts and order ---------------------------------------------------------------------


@given(
    counts=st.dictionaries(st.text(min_size=1, max_size=30), st.integers(0, 2**40), max_size=8),
    detail=st.none() | st.text(max_size=80),
    kind=st.sampled_from([*RequestType, None, "BOGUS"]),
)
def test_receipts_are_valid_dsr_receipts(counts: dict[str, int], detail: str | None, kind: Any) -> None:
    schema = default_catalog().get("DsrReceipt")
    value = Receipt.of(
        str(uuid.uuid4()),
        kind,
        ReceiptStatus.COMPLETED,
        requested_at=ISSUED,
        completed_at=ISSUED + timedelta(microseconds=1_234_567),
        store_counts=counts,
        detail=detail,
    ).to_value()
    decoded = AvroDeserializer()(AvroSerializer(schema)(value)).value
    assert decoded["store_counts"] == counts
    assert decoded["completed_at"] == ISSUED + timedelta(seconds=1, microseconds=234_000)
    assert decoded["request_type"] == (str(kind) if kind in list(RequestType) else "UNKNOWN")


def test_consecutive_erasures_run_together_and_the_order_holds() -> None:
    e1, e2, a, e3, r = (
        _command(RequestType.ERASURE),
        _command(RequestType.ERASURE),
        _command(RequestType.ACCESS),
        _command(RequestType.ERASURE),
        _command(RequestType.RESTRICTION),
    )
    assert _runs([e1, e2, a, e3, r]) == [[e1, e2], [a], [e3], [r]]


# ---- export ---------------------------------------------------------------------------------


def test_export_document_states_the_notice_and_the_rules_of_each_field(tmp_path: Path) -> None:
    row = {"event_id": "e1", "started_at": datetime(2026, 11, 1, 8, 30), "subject_keys": [K1], "visit_count": 3}
    content = document(
        default_policy(),
        MODELS,
        {"chat_conversations": [row]},
        request_id="r1",
        issued_at=ISSUED,
        generated_at=ISSUED,
    )
    assert content["purposes"] == list(default_policy().notice.purposes)
    assert content["recipients"] and content["transfers"] and content["automated_decisions"]
    chats = content["records"]["chat_conversation"]
    assert chats["rows"] == [
        {"event_id": "e1", "started_at": "2026-11-01T08:30:00Z", "subject_keys": [K1], "visit_count": 3}
    ]
    assert chats["fields"]["visit_count"] == {
        "category": "cookie_derived",
        "legal_basis": "consent",
        "needs": "cookie.analytics",
    }
    assert content["records"]["call"]["retention_days"] == 730
    assert content["records"]["call"]["rows"] == []
    assert "dsr_receipt" not in content["records"]

    request_id = str(uuid.uuid4())
    path = write_export(export_path(tmp_path, request_id), content)
    assert path == tmp_path / "exports" / f"{request_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == content
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with pytest.raises(DsrCommandError, match="UUID"):
        export_path(tmp_path, "../../etc/passwd")

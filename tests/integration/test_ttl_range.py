"""Row TTLs that cannot wrap (issue 11, finding 3), on the real engine (chDB).

The TTL used to be `toDateTime(<time>) + INTERVAL n DAY`: DateTime ends in 2106, so the
expiry of a row dated 2105 wrapped into 1970 and one dated 2400 was dropped on insert,
silently. Computed on the DateTime64 column, the expiry is right over the type's range,
and rows past their retention still go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from pipeline.policy import default_policy
from pipeline.serde import AvroSerializer
from sink.avro_container import SINGLE_OBJECT_PREFIX, container
from sink.sink_process import apply_schema
from tests.support.sink_store import model
from tests.support.stored_records import record

DATES = {
    "year-2100": datetime(2100, 1, 1, tzinfo=UTC),
    "year-2105": datetime(2105, 6, 1, tzinfo=UTC),
    "year-2400": datetime(2400, 1, 1, tzinfo=UTC),
    "recent": datetime.now(UTC).replace(microsecond=0) - timedelta(days=1),
    "past-retention": datetime.now(UTC).replace(microsecond=0) - timedelta(days=731),
}


def test_far_future_rows_are_kept_and_expired_rows_dropped(ch_client: Client) -> None:
    apply_schema(ch_client)
    calls = model("calls")
    serialize = AvroSerializer(calls.schema)
    rows = []
    for n, (label, at) in enumerate(DATES.items()):
        value = record(calls.schema, n, started_at=at, answered_at=at, ended_at=at)
        value["event_id"] = label
        rows.append(serialize(value)[SINGLE_OBJECT_PREFIX:])
    ch_client.raw_insert(calls.qualified, insert_block=container(calls.schema, rows), fmt="Avro")

    def stored() -> list[str]:
        return sorted(str(r[0]) for r in ch_client.query("SELECT event_id FROM records.calls").result_rows)

    kept = sorted(label for label in DATES if label != "past-retention")
    assert set(kept) <= set(stored())  # nothing within its retention is dropped on insert
    ch_client.command("OPTIMIZE TABLE records.calls FINAL")  # a merge applies the TTL
    assert stored() == kept  # the row past its retention goes, the far-future ones stay
    engine = str(
        ch_client.command("SELECT engine_full FROM system.tables WHERE name = 'calls' AND database = 'records'")
    )
    assert "toDateTime(" not in engine and "toIntervalYear(2)" in engine


def test_what_the_sink_executed_expires_with_the_receipts(ch_client: Client) -> None:
    apply_schema(ch_client)
    days = default_policy().records["dsr_receipt"].period.max_days  # past the limit in any calendar
    ch_client.command(
        "INSERT INTO records.dsr_executed (request_id, request_type, status, requested_at, completed_at, "
        "store_counts, detail, request_sha256, verified_at) "
        f"SELECT 'r' || toString(number), 'ERASURE', 'COMPLETED', t, t, map(), NULL, '', t "
        f"FROM (SELECT number, now64(3) - toIntervalDay(if(number = 0, {days} + 1, 1)) AS t FROM numbers(2))"
    )
    ch_client.command("OPTIMIZE TABLE records.dsr_executed FINAL")
    kept = [r[0] for r in ch_client.query("SELECT request_id FROM records.dsr_executed").result_rows]
    assert kept == ["r1"]

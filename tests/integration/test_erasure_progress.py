"""An erasure's counts kept in the store (sink/erasure_progress.py), on the real engine:
the counts recorded first are the ones reported, also by a run that starts after a kill
found fewer rows (the tables already done count 0 then); nothing that identifies the
subject is kept."""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from sink.erasure_progress import PROGRESS, recorded, resume
from sink.sink_process import apply_schema

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_counts_recorded_before_the_kill_win_over_counts_taken_after(ch_client: Client) -> None:
    apply_schema(ch_client)
    first = {"req-a": {"records.calls": 2, "records.chat_conversations": 1}, "req-b": {"records.calls": 1}}
    assert resume(ch_client, first, now=AT) == first

    # The restarted sink: calls were erased before the kill (0 now), a store counted anew.
    again = {"req-a": {"records.calls": 0, "records.chat_conversations": 1, "records.subject_restrictions": 3}}
    assert resume(ch_client, again, now=AT) == {
        "req-a": {"records.calls": 2, "records.chat_conversations": 1, "records.subject_restrictions": 3}
    }
    assert recorded(ch_client, ["req-a", "req-b", "req-c"]) == {
        "req-a": {"records.calls": 2, "records.chat_conversations": 1, "records.subject_restrictions": 3},
        "req-b": {"records.calls": 1},
    }
    columns = ch_client.query(f"SELECT name FROM system.columns WHERE concat(database, '.', table) = '{PROGRESS}'")
    assert sorted(r[0] for r in columns.result_rows) == ["counted_at", "request_id", "rows", "store"]
    assert "TTL" in str(ch_client.command(f"SHOW CREATE TABLE {PROGRESS}"))

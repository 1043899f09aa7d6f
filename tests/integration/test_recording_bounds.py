"""Notice §5 on the real engine (chDB): the sink's recording check against stored calls.
A recording outside its call is held with the reason (kept, hidden from analysts); one
whose call has not arrived waits, and is decided when the call is stored or when the
grace period ends; the verdicts are in records.recording_checks, so a restart (a new run)
loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from pipeline.policy import default_policy
from sink.recording_bounds import check_recordings
from sink.sink_process import apply_schema
from tests.support.sink_store import model, store
from tests.support.stored_records import record

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
ANSWERED, ENDED = NOW + timedelta(seconds=15), NOW + timedelta(minutes=5)
GRACE = default_policy().recording_call_grace


def _call(n: int, call_id: str) -> dict[str, object]:
    return record(model("calls").schema, n, call_id=call_id, started_at=NOW, answered_at=ANSWERED, ended_at=ENDED)


def _recording(n: int, call_id: str, start: datetime, end: datetime) -> dict[str, object]:
    return record(
        model("call_recordings").schema,
        n,
        recording_id=f"rec-{n}",
        call_id=call_id,
        notice_played_at=start - timedelta(seconds=5),
        recording_started_at=start,
        recording_ended_at=end,
        ingested_at=NOW,
    )


def _verdicts(client: Client) -> dict[str, str]:
    rows = client.query("SELECT recording_id, verdict FROM records.recording_checks FINAL").result_rows
    return {str(r): str(v) for r, v in rows}


def _analyst_view(client: Client) -> set[str]:
    return {str(r[0]) for r in client.query("SELECT recording_id FROM analyst.call_recordings").result_rows}


def test_recordings_outside_their_call_are_held_with_the_reason(ch_client: Client) -> None:
    apply_schema(ch_client)
    store(ch_client, model("calls"), [_call(1, "call-1")])
    store(
        ch_client,
        model("call_recordings"),
        [
            _recording(1, "call-1", ANSWERED, ENDED),
            _recording(2, "call-1", ANSWERED - timedelta(seconds=10), ENDED),
            _recording(3, "call-1", ANSWERED, ENDED + timedelta(seconds=30)),
            _recording(4, "call-late", ANSWERED, ENDED),  # its call arrives later
            _recording(5, "call-never", ANSWERED, ENDED),  # its call never arrives
        ],
    )
    assert _analyst_view(ch_client) == set(), "nothing is shown before it is checked"

    first = check_recordings(ch_client, now=NOW + timedelta(minutes=10))

    assert first == {"within": 1, "started_before_answer": 1, "ended_after_hangup": 1, "pending": 2}
    assert _verdicts(ch_client) == {
        "rec-1": "within",
        "rec-2": "started_before_answer",
        "rec-3": "ended_after_hangup",
    }
    assert _analyst_view(ch_client) == {"rec-1"}
    stored = ch_client.query("SELECT count() FROM records.call_recordings FINAL").result_rows[0][0]
    assert stored == 5, "held recordings stay stored: erasure and access reach them"

    store(ch_client, model("calls"), [_call(2, "call-late")])
    second = check_recordings(ch_client, now=NOW + GRACE + timedelta(minutes=1))  # a later run, e.g. after a restart

    assert second == {"within": 1, "call_unknown": 1}
    assert _verdicts(ch_client)["rec-4"] == "within" and _verdicts(ch_client)["rec-5"] == "call_unknown"
    assert _analyst_view(ch_client) == {"rec-1", "rec-4"}
    assert check_recordings(ch_client, now=NOW + GRACE + timedelta(minutes=2)) == {}, "each is decided once"

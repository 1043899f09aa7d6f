"""The sink's check of stored call recordings against their stored calls (notice §5;
the decision is pipeline/recording_bounds.py).

One run (a periodic job of the sink, and `check_recordings` for tests):
1. read every recording without a verdict in records.recording_checks, with its call's
   answered_at and ended_at when records.calls holds the call (FINAL, LEFT JOIN);
2. decide each: within, held with a reason, or undecided while its call may still come
   (the policy's `recordings.call_grace_minutes` after the recording was taken in);
3. insert the verdicts (recording id, verdict, time): one insert, no mutation.
The state is the two tables, so a restart loses nothing: an undecided recording is read
again on the next run, whenever its call arrives. Until a recording is decided `within`,
the analyst view does not show it. No personal value is read or logged: times and ids.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import RECORDING_CHECKS_TABLE, RECORDINGS_TABLE, RECORDS_DB
from pipeline.policy import Policy, default_policy
from pipeline.recording_bounds import CallBounds, verdict
from sink.rows_insert import insert_rows

log = logging.getLogger(__name__)

CHECKS = f"{RECORDS_DB}.{RECORDING_CHECKS_TABLE}"
_PENDING = (
    "SELECT r.recording_id, r.recording_started_at, r.recording_ended_at, r.ingested_at, "
    "c.call_id != '' AS known, c.answered_at, c.ended_at "
    f"FROM {RECORDS_DB}.{RECORDINGS_TABLE} AS r FINAL "
    f"LEFT JOIN (SELECT call_id, answered_at, ended_at FROM {RECORDS_DB}.calls FINAL) AS c ON r.call_id = c.call_id "
    f"WHERE r.recording_id NOT IN (SELECT recording_id FROM {CHECKS})"
)


def check_recordings(client: Client, policy: Policy | None = None, now: datetime | None = None) -> Counter[str]:
    """Decide every undecided recording; returns the verdicts of this run by name
    ("pending" counts those still waiting for their call)."""
    policy = policy or default_policy()
    now = now or datetime.now(UTC)
    decided: list[tuple[str, str, datetime]] = []
    tally: Counter[str] = Counter()
    for recording_id, started, ended, ingested, known, answered, call_ended in client.query(
        _PENDING, settings={"join_use_nulls": 0}
    ).result_rows:
        call = CallBounds(_utc(answered) if answered else None, _utc(call_ended)) if known else None
        found = verdict(
            _utc(started), _utc(ended), call, ingested_at=_utc(ingested), now=now, grace=policy.recording_call_grace
        )
        tally[found or "pending"] += 1
        if found is not None:
            decided.append((str(recording_id), found, now))
    if decided:
        insert_rows(client, CHECKS, ("recording_id", "verdict", "checked_at"), decided)
    held = sum(n for name, n in tally.items() if name not in ("within", "pending"))
    if held:
        log.warning("recording bounds: %d recording(s) held outside their call: %s", held, dict(tally))
    return tally


def recording_bounds_job(policy: Policy | None = None) -> Callable[[Client], Counter[str]]:
    """A maintenance job `fn(client)` for the sink's scheduler."""
    return lambda client: check_recordings(client, policy)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""`records reconcile --since T [--json]`: where every raw event produced since T ended up
(stored, stripped, superseded, quarantined, dead-lettered, erased, expired on insert),
by id, and which events are missing or in two places (retention_jobs/reconcile.py).

Reads the raw, quarantine and dead-letter topics from their offsets at T and the stored
rows FINAL (through the running sink's read-only endpoint in embedded mode). Needs the
subject-key pepper to tell erased events. Exit 1 when an event is missing or duplicated,
after printing the result.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from pipeline.exceptions import ConfigError
from records.reconcile_read import reconcile_window
from records.wiring import Wiring
from retention_jobs.exceptions import ReconciliationFailed
from retention_jobs.reconcile import Reconciliation, first

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC if no offset) or a duration ago: 90s, 15m, 2h, 7d."""
    match = _AGO.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected an ISO 8601 time or a duration such as 15m, 2h, 7d") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_reconciliation(wiring: Wiring, since: datetime, now: datetime) -> Reconciliation:
    """The reconciliation of the window since `since` on the configured Kafka and ClickHouse."""
    with wiring.clickhouse(readonly=True) as client:
        return reconcile_window(
            wiring.settings.kafka, client, serde=wiring.serde, keyer=wiring.keyer(), since=since, now=now
        )


def reconcile(
    since: Annotated[
        str, typer.Option("--since", help="Window start: ISO 8601 time, or a duration ago (15m, 2h, 7d).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Account for every raw event produced since T, by id; exit 1 if any is missing or duplicated."""
    now = datetime.now(UTC)
    start = parse_since(since, now)
    result = run_reconciliation(Wiring(), start, now)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(f"since {start.isoformat()}: {result.summary()}")
        if result.letter_copies:
            typer.echo(f"{result.letter_copies} repeated copies of dead letters (replays; not duplicates)")
        for accounted in result.missing[:20]:
            typer.echo(f"missing: {accounted.event.label()}")
        for accounted in result.duplicates[:20]:
            places = "; ".join(f"{p.outcome}: {p.detail}" for p in accounted.places)
            typer.echo(f"duplicate: {accounted.event.label()} in {places}")
    if not result.balanced:
        raise ReconciliationFailed(
            f"{len(result.missing)} missing, {len(result.duplicates)} duplicated event(s), first: "
            + ", ".join(first([*result.missing, *result.duplicates], 5))
        )


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)

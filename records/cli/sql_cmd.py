"""`records sql "SELECT ..."`: run one SQL statement against the configured ClickHouse and
print the result as a table (default), JSON or CSV; statements without a result set
(CREATE, INSERT, ALTER ...) print "ok".

With CLICKHOUSE_URL set the statement goes to that server. In embedded mode this command
opens the chDB directory itself while no other process holds it; while the sink runs, it
goes through the sink's query endpoint as a user: `--user NAME` (password prompted),
else RECORDS_SQL_USER/RECORDS_SQL_PASSWORD, else the sink's owner credential (role
pipeline). An analyst uses her own user and sees the analyst views only.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.access_users import Credential
from pipeline.clickhouse import Rows, run_statement
from pipeline.config import Secret, load_settings
from records.wiring import Wiring


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def sql(
    statement: Annotated[str, typer.Argument(help='One SQL statement, e.g. "SELECT count() FROM chat".')],
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="How to print the rows.")] = OutputFormat.table,
    readonly: Annotated[bool, typer.Option("--readonly", help="Refuse writes and DDL.")] = False,
    user: Annotated[
        str | None, typer.Option("--user", help="Your user on the sink's endpoint (password prompted).")
    ] = None,
) -> None:
    """Run one SQL statement on ClickHouse (embedded chDB, or CLICKHOUSE_URL) and print the result."""
    settings = load_settings()
    credential = None
    if user is not None:
        password = settings.sql_password if settings.sql_user == user else None
        credential = Credential(user, password or Secret(typer.prompt(f"password of {user}", hide_input=True)))
    with Wiring(settings).clickhouse(readonly=readonly, credential=credential) as client:
        result = run_statement(client, statement)
    if result is None:
        typer.echo("ok")
    elif output is OutputFormat.json:
        _print_json(result)
    elif output is OutputFormat.csv:
        _print_csv(result)
    else:
        _print_table(result)


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)


def _plain(value: Any) -> Any:
    """JSON/CSV form of a value the driver returned: ISO dates, text for the rest."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _print_json(result: Rows) -> None:
    """A JSON array with one object per line."""
    lines = [
        json.dumps(dict(zip(result.columns, row, strict=True)), default=_plain, ensure_ascii=False)
        for row in result.rows
    ]
    typer.echo("[\n" + ",\n".join(lines) + "\n]" if lines else "[]")


def _print_csv(result: Rows) -> None:
    writer = csv.writer(sys.stdout)
    if result.columns:
        writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if value is None else _plain(value) for value in row])


def _print_table(result: Rows) -> None:
    count = len(result.rows)
    if not result.columns:  # chDB sends no header for an empty result
        typer.echo("0 rows")
        return
    table = Table(*(escape(column) for column in result.columns), caption=f"{count} row{'' if count == 1 else 's'}")
    for row in result.rows:
        table.add_row(*("NULL" if value is None else escape(str(_plain(value))) for value in row))
    Console().print(table)

"""`records users ...`: the personal users of the embedded query endpoint, and its access log.

A DPO adds each analyst as a user with a role (analyst, dpo, pipeline; what each reads:
pipeline/access_roles.py); the password is prompted twice (or read from stdin with
`--password-stdin`) and stored only as a slow salted hash (pipeline/access_users.py).
`records users access-log` prints who queried what and when (pipeline/access_log.py).
With CLICKHOUSE_URL set, users and grants live on the server instead (deploy/).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from pipeline.access_log import read_entries
from pipeline.access_roles import Role
from pipeline.access_users import UserStore, check_name
from pipeline.config import load_settings
from pipeline.exceptions import AccessError

users_app = typer.Typer(help="Personal users and roles of the embedded query endpoint.", no_args_is_help=True)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise AccessError("no password on stdin")
        return line
    first = typer.prompt("password", hide_input=True)
    if typer.prompt("password again", hide_input=True) != first:
        raise AccessError("the two passwords differ")
    return str(first)


def _store() -> UserStore:
    return UserStore(load_settings().users_file)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The person's account name, e.g. alice.")],
    role: Annotated[Role, typer.Option("--role", help="analyst: analyst.* only; dpo: records.* too; pipeline.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a personal user with a role."""
    check_name(name)
    user = _store().add(name, role, _password(password_stdin), datetime.now(UTC).isoformat(timespec="seconds"))
    typer.echo(f"user {user.name} added with role {user.role.value}")


@users_app.command("list")
def list_users() -> None:
    """The users, their roles and when they were added (never a password)."""
    users = _store().users()
    if not users:
        typer.echo("no users: add one with `records users add NAME --role analyst`")
        return
    for user in sorted(users.values(), key=lambda u: u.name):
        typer.echo(f"{user.name}\t{user.role.value}\t{user.created_at}")


@users_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user; the endpoint refuses the next request with that name."""
    _store().remove(name)
    typer.echo(f"user {name} removed")


@users_app.command("passwd")
def passwd(name: Annotated[str, typer.Argument(help="The user.")], password_stdin: PasswordStdin = False) -> None:
    """Set a new password for a user."""
    store = _store()
    if store.get(name) is None:
        raise AccessError(f"no user {name}")
    store.set_password(name, _password(password_stdin))
    typer.echo(f"password of {name} changed")


@users_app.command("access-log")
def access_log(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's queries.")] = None,
    last: Annotated[int, typer.Option("--last", help="How many entries, newest last.")] = 50,
) -> None:
    """Who queried the embedded store: time, user, role, outcome, tables, rows (no query text)."""
    path = load_settings().access_log_file
    entries = [e for e in read_entries(path) if user is None or e.user == user]
    if not entries:
        typer.echo(f"no entries in {path}")
        return
    for e in entries[-last:]:
        rows = "-" if e.rows is None else str(e.rows)
        tables = ",".join(e.tables) or "-"
        reason = f"\t{e.reason}" if e.reason else ""
        typer.echo(f"{e.at}\t{e.user or '-'}\t{e.role or '-'}\t{e.outcome}\t{tables}\t{rows}{reason}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")

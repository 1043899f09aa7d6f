"""The `records` command line. Each sub-module registers its own commands; this module
only assembles them and turns project errors into one readable line and exit code 1."""

from __future__ import annotations

import importlib
import sys

import typer
from confluent_kafka import KafkaError, KafkaException

from pipeline.exceptions import RecordsError
from pipeline.private_files import private_umask

# The command modules in the order `records --help` lists them, and the top-level names each
# registers. `records NAME ...` imports only NAME's module (most import heavy libraries:
# importing them all cost ~0.35 s of every command, an erasure's included).
_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("broker_cmd", ("fetch-kafka", "up", "down", "status")),
    ("topics_cmd", ("topics",)),
    ("produce_cmd", ("produce", "simulate")),
    ("sql_cmd", ("sql",)),
    ("worker_cmd", ("worker",)),
    ("retention_cmd", ("retention", "report")),
    ("reconcile_cmd", ("reconcile",)),
    ("clickhouse_cmd", ("clickhouse",)),
    ("dsr_cmd", ("dsr",)),
    ("users_cmd", ("users",)),
    ("demo_cmd", ("demo",)),
    ("deploy_cmd", ("deploy",)),
    ("bench_cmd", ("bench",)),
)


def _root() -> None:
    """GDPR records pipeline for customer-service chats and calls."""


def build_app(command: str | None = None) -> typer.Typer:
    """The `records` application: every command, or only the module that registers
    `command` when that names one (anything else gets every command, and typer's help or
    error)."""
    app = typer.Typer(
        name="records",
        help="GDPR records pipeline for customer-service chats and calls.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    wanted = [module for module, names in _MODULES if command in names] or [module for module, _ in _MODULES]
    for module in wanted:
        importlib.import_module(f"records.cli.{module}").register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    """`records.cli.app`: every command (tests and tools invoke it), built when first asked for."""
    if name == "app":
        app = globals()["app"] = build_app()
        return app
    raise AttributeError(name)


def main() -> None:
    # Everything a `records` process creates (data, chDB parts, logs, exports, secrets) is
    # private to its user, and so is what its children (the broker's JVM) create.
    private_umask()
    try:
        command = next((arg for arg in sys.argv[1:2] if not arg.startswith("-")), None)
        build_app(command)(standalone_mode=True)
    except RecordsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        detail = f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else type(exc).__name__
        typer.echo(f"error: kafka: {detail}", err=True)
        sys.exit(1)

"""The `records` command line. Each sub-module registers its own commands; this module
only assembles them and turns project errors into one readable line and exit code 1."""

from __future__ import annotations

import sys

import typer
from confluent_kafka import KafkaError, KafkaException

from pipeline.exceptions import RecordsError
from pipeline.private_files import private_umask

app = typer.Typer(
    name="records",
    help="GDPR records pipeline for customer-service chats and calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """GDPR records pipeline for customer-service chats and calls."""


def _register() -> None:
    from records.cli import (
        bench_cmd,
        broker_cmd,
        clickhouse_cmd,
        demo_cmd,
        deploy_cmd,
        dsr_cmd,
        produce_cmd,
        reconcile_cmd,
        retention_cmd,
        sql_cmd,
        topics_cmd,
        users_cmd,
        worker_cmd,
    )

    modules = (
        broker_cmd,
        topics_cmd,
        produce_cmd,
        sql_cmd,
        worker_cmd,
        retention_cmd,
        reconcile_cmd,
        clickhouse_cmd,
        dsr_cmd,
        users_cmd,
        demo_cmd,
        deploy_cmd,
        bench_cmd,
    )
    for module in modules:
        module.register(app)


_register()


def main() -> None:
    # Everything a `records` process creates (data, chDB parts, logs, exports, secrets) is
    # private to its user, and so is what its children (the broker's JVM) create.
    private_umask()
    try:
        app(standalone_mode=True)
    except RecordsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        detail = f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else type(exc).__name__
        typer.echo(f"error: kafka: {detail}", err=True)
        sys.exit(1)

"""`records fetch-kafka`, `records up`, `records down`, `records status`: the local broker."""

from __future__ import annotations

import time

import typer

from pipeline.config import load_settings
from pipeline.local_kafka import DEFAULT_PORT, LocalBroker, fetch_jars


def _broker(port: int = DEFAULT_PORT) -> LocalBroker:
    settings = load_settings()
    return LocalBroker(settings.kafka_dir, settings.kafka_libs_dir, port=port)


def fetch_kafka() -> None:
    """Download Apache Kafka's broker jars from Maven Central (once)."""
    settings = load_settings()
    started = time.monotonic()
    if fetch_jars(settings.kafka_libs_dir):
        size = sum(p.stat().st_size for p in settings.kafka_libs_dir.glob("*.jar")) / 1e6
        typer.echo(f"fetched Kafka jars ({size:.0f} MB) in {time.monotonic() - started:.1f} s")
    else:
        typer.echo(f"Kafka jars already in {settings.kafka_libs_dir}")


def up(port: int = typer.Option(DEFAULT_PORT, help="Broker port on 127.0.0.1 (controller: port + 1).")) -> None:
    """Start the local Kafka broker (KRaft, 127.0.0.1) unless it is running."""
    broker = _broker(port)
    started = time.monotonic()
    status, started_now = broker.start()
    if started_now:
        typer.echo(f"broker up on {status.bootstrap} in {time.monotonic() - started:.1f} s (pid {status.pid})")
    else:
        typer.echo(f"already running: {status.describe()}")


def down() -> None:
    """Stop the local Kafka broker (SIGTERM, then SIGKILL after 20 s)."""
    broker = _broker()
    started = time.monotonic()
    if broker.stop():
        typer.echo(f"broker stopped in {time.monotonic() - started:.1f} s")
    else:
        typer.echo("broker not running")


def status() -> None:
    """Show whether the local broker runs."""
    typer.echo(_broker().status().describe())


def register(app: typer.Typer) -> None:
    app.command("fetch-kafka")(fetch_kafka)
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)

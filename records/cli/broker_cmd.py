"""`records fetch-kafka`, `records up`, `records down`, `records status`: the local broker."""

from __future__ import annotations

import time

import typer

from pipeline.config import load_settings
from records.local_kafka import DEFAULT_PORT, LocalBroker, fetch_jars


def fetch_kafka() -> None:
    """Download Apache Kafka's broker jars from Maven Central (once)."""
    libs_dir = load_settings().kafka_libs_dir
    started = time.monotonic()
    if fetch_jars(libs_dir):
        jars = list(libs_dir.glob("*.jar"))
        size_mb = sum(p.stat().st_size for p in jars) / 1e6
        typer.echo(f"fetched {len(jars)} Kafka jars ({size_mb:.0f} MB) in {time.monotonic() - started:.1f} s")
    else:
        typer.echo(f"Kafka jars already in {libs_dir}")


def up(port: int = typer.Option(DEFAULT_PORT, help="Broker port on 127.0.0.1 (the controller uses port + 1).")) -> None:
    """Start the local Kafka broker (KRaft, 127.0.0.1) unless it is running."""
    broker = LocalBroker.from_settings(load_settings(), port=port)
    started = time.monotonic()
    status, started_now = broker.start()
    if started_now:
        typer.echo(f"broker up on {status.bootstrap} in {time.monotonic() - started:.1f} s (pid {status.pid})")
    else:
        typer.echo(f"already running: {status.describe()}")


def down() -> None:
    """Stop the local Kafka broker (SIGTERM, then SIGKILL after 20 s)."""
    broker = LocalBroker.from_settings(load_settings())
    started = time.monotonic()
    if broker.stop():
        typer.echo(f"broker stopped in {time.monotonic() - started:.1f} s")
    else:
        typer.echo("broker not running")


def status() -> None:
    """Show whether the local broker runs, its pid, address and uptime."""
    typer.echo(LocalBroker.from_settings(load_settings()).status().describe())


def register(app: typer.Typer) -> None:
    app.command("fetch-kafka")(fetch_kafka)
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)

"""`records topics ...`: the pipeline's topics as code."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import load_settings
from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.topics import ALL_TOPICS

topics_app = typer.Typer(help="Create, align and inspect the pipeline's Kafka topics.", no_args_is_help=True)

_SHOWN = ("cleanup.policy", "retention.ms", "segment.ms", "max.compaction.lag.ms", "delete.retention.ms")


@topics_app.command("ensure")
def ensure() -> None:
    """Create missing topics and align the configs of existing ones (idempotent)."""
    admin = KafkaAdmin(load_settings().kafka)
    changes = ensure_topics(admin, ALL_TOPICS)
    for change in changes:
        typer.echo(change.describe())
    if not changes:
        typer.echo(f"all {len(ALL_TOPICS)} topics up to date")
    else:
        typer.echo(f"{len(changes)} change(s) applied to {len({c.topic for c in changes})} topic(s)")


@topics_app.command("list")
def list_topics() -> None:
    """Show the pipeline's topics with their partitions and key settings."""
    admin = KafkaAdmin(load_settings().kafka)
    states = admin.topic_states(t.name for t in ALL_TOPICS)
    table = Table("topic", "partitions", *_SHOWN)
    for spec in ALL_TOPICS:
        state = states.get(spec.name)
        if state is None:
            table.add_row(spec.name, "missing", *["" for _ in _SHOWN])
        else:
            table.add_row(spec.name, str(state.partitions), *[state.config.get(k, "") for k in _SHOWN])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")


# ---- `records topics audit [--fix]`: owned by the retention jobs (pipeline/cli/retention_cmd.py)
def _register_audit() -> None:
    from pipeline.cli.retention_cmd import topics_audit

    topics_app.command("audit")(topics_audit)


_register_audit()

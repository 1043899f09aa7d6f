"""`records topics ensure` and `records topics list`: the pipeline's topics as code."""

from __future__ import annotations

import typer

from pipeline.config import load_settings
from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.topics import ALL_TOPICS
from retention_jobs.linger import format_ms

topics_app = typer.Typer(help="Create, align and inspect the pipeline's Kafka topics.", no_args_is_help=True)

# (config key, column heading) of the settings that decide how long data stays.
_SHOWN = (
    ("cleanup.policy", "cleanup"),
    ("retention.ms", "retention"),
    ("segment.ms", "segment"),
    ("max.compaction.lag.ms", "max.compaction.lag"),
    ("delete.retention.ms", "delete.retention"),
)
_LONG_MAX = str(2**63 - 1)


@topics_app.command("ensure")
def ensure() -> None:
    """Create missing topics and align the configs of existing ones (idempotent)."""
    changes = ensure_topics(KafkaAdmin(load_settings().kafka), ALL_TOPICS)
    for change in changes:
        typer.echo(change.describe())
    if changes:
        typer.echo(f"{len(changes)} change(s) applied to {len({c.topic for c in changes})} topic(s)")
    else:
        typer.echo(f"all {len(ALL_TOPICS)} topics up to date")


def _value(key: str, value: str | None) -> str:
    if value is None:
        return "-"
    if not key.endswith(".ms"):
        return value
    if value == "-1":
        return "forever"
    if value == _LONG_MAX:
        return "unbounded"
    return format_ms(int(value)).replace(" ", "")


@topics_app.command("list")
def list_topics() -> None:
    """Show the pipeline's topics as the cluster has them: partitions and retention settings."""
    states = KafkaAdmin(load_settings().kafka).topic_states(t.name for t in ALL_TOPICS)
    rows = [["topic", "partitions", *(heading for _, heading in _SHOWN)]]
    for spec in ALL_TOPICS:
        state = states.get(spec.name)
        if state is None:
            rows.append([spec.name, "missing", *("-" for _ in _SHOWN)])
        else:
            shown = [_value(key, state.config.get(key)) for key, _ in _SHOWN]
            rows.append([spec.name, str(state.partitions), *shown])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")


# ---- `records topics audit [--fix]`: owned by the retention jobs (records/cli/retention_cmd.py)
def _register_audit() -> None:
    from records.cli.retention_cmd import topics_audit

    topics_app.command("audit")(topics_audit)


_register_audit()

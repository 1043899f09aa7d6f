"""`records retention run`, `records topics audit [--fix]` and `records report`.

- `retention run`: delete every row past its policy limit now, verify the oldest row of
  each record type, exit 1 when a violation remains. In server mode a CronJob runs it; in
  embedded mode the sink owns the chDB directory and runs the same job on its schedule,
  so this command then fails with the owner's pid (run it with the sink stopped).
- `topics audit`: every topic's retention/compaction settings against pipeline/topics.py
  and its worst-case linger against the policy's erasure bound; `--fix` aligns drifted
  topics. Registered into the `records topics` group by records/cli/topics_cmd.py.
- `report`: one line per commitment of the privacy notice with its live evidence, as a
  terminal table, JSON (`--json`) or a self-contained HTML page (`--html FILE`). Exit 1
  when a commitment fails, after printing the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient
from prometheus_client import CollectorRegistry, write_to_textfile
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.clickhouse import describe_target
from pipeline.config import Settings, load_settings
from pipeline.exports import expire_exports, exports_dir
from pipeline.policy import default_policy
from pipeline.private_files import private_file
from records.cli.reconcile_cmd import parse_since
from records.reconcile_read import reconcile_window
from records.wiring import Wiring
from retention_jobs.access_audit import access_evidence
from retention_jobs.enforce import RetentionResult, enforce_retention
from retention_jobs.exceptions import CommitmentsFailed, RetentionViolation, TopicsOutOfPolicy
from retention_jobs.linger import format_ms
from retention_jobs.metrics import RetentionMetrics
from retention_jobs.report import Report, evaluate
from retention_jobs.report_collect import collect_evidence, exports_evidence
from retention_jobs.report_html import render_html
from retention_jobs.topics_audit import TopicAudit, audit_topics, describe_drift, fix_topics, kafka_evidence

retention_app = typer.Typer(help="Enforce and prove the retention limits of the policy.", no_args_is_help=True)


@retention_app.command("run")
def retention_run(
    check_only: Annotated[
        bool, typer.Option("--check-only", help="Only verify: report rows past their limit without deleting them.")
    ] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", help="Also write the Prometheus gauges to this file (textfile collector)."),
    ] = None,
) -> None:
    """Delete every row older than its retention limit now, then prove none is left; remove
    access exports older than the policy's exports.retention_days."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    policy = default_policy()
    hint = "run without --check-only to delete them" if check_only else ""
    # Exports are files, not rows: this process removes them even while a sink owns the store.
    delete_exports = not check_only
    with Wiring(settings).clickhouse() as client:
        if _via_running_sink(settings, client) and not check_only:
            # The sink owns the embedded store and runs this same job on its schedule; this
            # process only reaches its read-only endpoint, so it can verify but not delete.
            typer.echo("the running sink owns the embedded store and enforces retention itself: verifying only")
            check_only = True
            hint = "the sink deletes them on its next retention run; see its log"
        result = enforce_retention(client, policy, delete=not check_only, cluster=settings.clickhouse_cluster)
    registry = CollectorRegistry()
    RetentionMetrics.create(registry).observe(result)
    if metrics_file is not None:
        write_to_textfile(str(metrics_file), registry)
    _print_retention(result)
    sweep = expire_exports(exports_dir(settings.data_dir), policy.export_retention, result.now, delete=delete_exports)
    verb = "removed" if delete_exports else "due for removal"
    typer.echo(f"exports older than {policy.export_retention.days} d: {sweep.removed} {verb}, {sweep.kept} kept")
    if not result.ok:
        names = ", ".join(t.record_type for t in result.violations)
        raise RetentionViolation(
            f"retention violated for {len(result.violations)} record type(s): {names} "
            f"(rows older than their limit remain{'; ' + hint if hint else ''})"
        )


def topics_audit(
    fix: Annotated[
        bool, typer.Option("--fix", help="Align drifted or missing topics with pipeline/topics.py.")
    ] = False,
) -> None:
    """Check every topic's retention settings and worst-case linger against the policy.

    Compares retention.ms, cleanup.policy, segment.ms, compaction lags and
    delete.retention.ms with pipeline/topics.py, and shows how long an erased subject's
    data can still be read from each topic (flagged above the policy's erasure bound)."""
    settings = load_settings()
    policy = default_policy()
    audits = audit_topics(settings.kafka, policy)
    _print_audit(audits, policy.erasure_max_linger.total_seconds())
    if fix and any(a.drift or not a.exists for a in audits):
        for change in fix_topics(settings.kafka):
            typer.echo(f"fixed {change}")
        audits = audit_topics(settings.kafka, policy)
        typer.echo("after --fix:")
        _print_audit(audits, policy.erasure_max_linger.total_seconds())
    bad = [a for a in audits if not a.ok]
    if bad:
        raise TopicsOutOfPolicy(
            f"{len(bad)} topic(s) out of policy: "
            + ", ".join(f"{a.name} ({a.problem})" for a in bad)
            + ("" if fix else "; `records topics audit --fix` aligns drifted settings")
        )


def report(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page with charts to FILE.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Add the reconciliation of the raw events since T (ISO time or 15m, 2h, 7d; needs the pepper).",
        ),
    ] = None,
) -> None:
    """The compliance report: each commitment of the privacy notice with its live evidence."""
    settings = load_settings()
    policy = default_policy()
    now = datetime.now(UTC)
    start = parse_since(since, now) if since is not None else None
    kafka = kafka_evidence(settings.kafka, policy)
    with Wiring(settings).clickhouse(readonly=True) as client:
        storage = describe_target(settings)
        if _via_running_sink(settings, client):
            storage += " (through the running sink's read-only endpoint)"
        evidence = collect_evidence(client, policy, now, storage=storage, kafka=kafka)
        if start is not None:
            wiring = Wiring(settings)
            reconciliation = reconcile_window(
                settings.kafka, client, serde=wiring.serde, keyer=wiring.keyer(), since=start, now=now, policy=policy
            )
            evidence = replace(evidence, reconciliation=reconciliation)
    evidence = replace(evidence, access=access_evidence(settings), exports=exports_evidence(settings, policy, now))
    result = evaluate(policy, evidence)
    if html is not None:
        private_file(html, render_html(result))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(result)
        if html is not None:
            typer.echo(f"wrote {html}")
    if not result.passed:
        failed = [line.id for line in result.lines if not line.passed]
        raise CommitmentsFailed(f"{len(failed)} of {len(result.lines)} commitments fail: {', '.join(failed)}")


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")
    app.command("report")(report)


def _via_running_sink(settings: Settings, client: Client) -> bool:
    """Embedded mode while the sink owns the directory: `connect` handed out an HTTP client
    to the sink's read-only endpoint instead of the engine itself."""
    return settings.embedded_clickhouse and isinstance(client, HttpClient)


# ---- terminal output -----------------------------------------------------------------


def _print_retention(result: RetentionResult) -> None:
    """One row per record type; the details of violations and TTL mismatches are logged."""
    verb = "deleted" if result.deleted_by_run else "past limit"
    table = Table("record type", "limit", verb, "rows kept", "oldest", "status", title="retention")
    for t in result.tables:
        oldest = "-" if t.oldest_age_days is None else f"{t.oldest_age_days:.1f} d"
        status = "[red]VIOLATION[/red]" if t.violated else "ok"
        table.add_row(t.record_type, t.limit.label, str(t.deleted), str(t.rows), oldest, status)
    Console().print(table)


def _print_audit(audits: tuple[TopicAudit, ...], bound_s: float) -> None:
    table = Table(
        title=f"Kafka topics: worst-case linger of erased data (policy bound {format_ms(int(bound_s * 1000))})"
    )
    for header in ("topic", "PII", "linger", "from", "tombstone gone", "configuration", "status"):
        table.add_column(header, no_wrap=True)
    for a in audits:
        linger = a.linger
        status = []
        if not a.exists:
            status.append("MISSING")
        if a.drift:
            status.append("DRIFT")
        if a.linger_error:
            status.append("UNREADABLE")
        if a.exceeds_bound:
            status.append("OVER BOUND")
        table.add_row(
            escape(a.name),
            "yes" if a.personal_data else "no",
            format_ms(linger.data_ms) if linger else "-",
            escape(linger.basis) if linger else escape(a.linger_error or "-"),
            format_ms(linger.tombstone_ms) if linger and linger.tombstone_ms is not None else "-",
            escape("; ".join(describe_drift(c) for c in a.drift))
            if a.drift
            else ("missing" if not a.exists else "as specified"),
            f"[red]{', '.join(status)}[/red]" if status else "ok",
        )
    Console(width=220).print(table)


def _print_report(result: Report) -> None:
    table = Table("status", "notice", "commitment", "live evidence", title="compliance report", show_lines=True)
    for line in result.lines:
        status = "[green]PASS[/green]" if line.passed else "[red]FAIL[/red]"
        evidence = escape(line.evidence)
        if line.details and not line.passed:
            evidence += "\n" + "\n".join(f"  {escape(d)}" for d in line.details)
        table.add_row(status, line.notice, escape(line.commitment), evidence)
    passed = sum(1 for line in result.lines if line.passed)
    table.caption = f"{passed} of {len(result.lines)} commitments pass · evidence from {escape(result.storage)}"
    Console().print(table)

"""`records clickhouse ...`: the storage model of pipeline/clickhouse_ddl.py.

- `init`: apply the DDL (databases, tables with their TTLs, support tables, analyst
  views), idempotently, and say what it did. On a server (CLICKHOUSE_URL) it also creates
  the roles `analyst`, `dpo` and `pipeline` with their grants and row policies; chDB has
  no access control, so in embedded mode those statements are only checked to parse
  (`formatQuery`). While the sink owns the embedded directory, `init` checks through the
  sink's endpoint that the model is in place (the sink applies it at start).
- `ddl`: print the DDL; `roles-sql`: print the access-control statements, to review
  them or to apply them with another tool (`clickhouse-client --multiquery`).
- With a cluster (`--cluster NAME`, or CLICKHOUSE_CLUSTER for `init`): the same model
  ON CLUSTER, as replicated local tables behind Distributed tables
  (pipeline/clickhouse_cluster.py); `init` then needs a server (CLICKHOUSE_URL).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import typer
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient

from pipeline.chdb_owner import read_owner
from pipeline.clickhouse import describe_target, run_statement
from pipeline.clickhouse_cluster import Cluster, cluster_access_statements, cluster_statements
from pipeline.clickhouse_ddl import ANALYST_DB, RECORDS_DB, ROLES, access_statements, statements, table_models
from pipeline.config import Settings, load_settings
from pipeline.exceptions import ClickHouseError, ConfigError
from pipeline.policy import default_policy
from records.wiring import Wiring

clickhouse_app = typer.Typer(
    help="Create and inspect the ClickHouse storage model (tables, TTLs, analyst views, roles).", no_args_is_help=True
)


@clickhouse_app.command("init")
def init() -> None:
    """Create databases, tables, analyst views (and on a server: roles, grants, row policies)."""
    settings = load_settings()
    typer.echo(f"target: {describe_target(settings)}")
    if settings.clickhouse_cluster:
        _init_cluster(settings, Cluster(settings.clickhouse_cluster))
        return
    with Wiring(settings).clickhouse() as client:
        if settings.embedded_clickhouse and isinstance(client, HttpClient):
            _check_owned(settings, client)
            return
        before = _existing(client)
        for statement in statements():
            run_statement(client, statement)
        _report_model(client, before)
        if settings.embedded_clickhouse:
            count = _validate_access(client)
            typer.echo(
                f"access control: {count} statements for roles {', '.join(ROLES)} parse; not applied, "
                "chDB has no users or grants (use a ClickHouse server; `records clickhouse roles-sql` prints them)"
            )
        else:
            count = 0
            for statement in access_statements():
                run_statement(client, statement)
                count += 1
            typer.echo(f"access control: roles {', '.join(ROLES)} with grants and row policies ({count} statements)")
            typer.echo("  give people a role: GRANT analyst TO <user>  (users are personal, with their own password)")


_CLUSTER_OPTION = typer.Option("--cluster", help="Cluster name: replicated, sharded tables ON CLUSTER.")


def _ddl(cluster: str | None) -> Iterator[str]:
    return cluster_statements(Cluster(cluster)) if cluster else statements()


def _access(cluster: str | None) -> Iterator[str]:
    return cluster_access_statements(Cluster(cluster)) if cluster else access_statements()


@clickhouse_app.command("ddl")
def ddl(cluster: Annotated[str | None, _CLUSTER_OPTION] = None) -> None:
    """Print the DDL that `init` applies."""
    for statement in _ddl(cluster):
        typer.echo(statement + ";\n")


@clickhouse_app.command("roles-sql")
def roles_sql(cluster: Annotated[str | None, _CLUSTER_OPTION] = None) -> None:
    """Print the roles, grants and row policies that `init` creates on a server."""
    for statement in _access(cluster):
        typer.echo(statement + ";")


def _init_cluster(settings: Settings, cluster: Cluster) -> None:
    """Apply the cluster model through one node of a server cluster."""
    if settings.embedded_clickhouse:
        raise ConfigError("CLICKHOUSE_CLUSTER needs a ClickHouse server: set CLICKHOUSE_URL to one node of the cluster")
    with Wiring(settings).clickhouse() as client:
        count = 0
        for statement in cluster_statements(cluster):
            run_statement(client, statement)
            count += 1
        typer.echo(
            f"cluster {cluster.name}: {count} statements ON CLUSTER: <table>_local ReplicatedReplacingMergeTree "
            "per shard, Distributed <table> sharded by cityHash64(row id), DSR state replicated everywhere, views"
        )
        count = 0
        for statement in cluster_access_statements(cluster):
            run_statement(client, statement)
            count += 1
        typer.echo(f"access control: roles {', '.join(ROLES)} with grants and row policies ({count} statements)")


def register(app: typer.Typer) -> None:
    app.add_typer(clickhouse_app, name="clickhouse")


def _existing(client: Client) -> set[str]:
    result = run_statement(
        client, f"SELECT database || '.' || name FROM system.tables WHERE database IN ('{RECORDS_DB}', '{ANALYST_DB}')"
    )
    return {row[0] for row in result.rows} if result is not None else set()


def _report_model(client: Client, before: set[str]) -> None:
    policy = default_policy()
    for record in policy.records.values():
        name = f"{RECORDS_DB}.{record.table}"
        state = "exists" if name in before else "created"
        typer.echo(
            f"table {name}: {state}; row TTL {record.period.label} on {record.time_field}, "
            f"monthly partitions, ReplacingMergeTree by row id"
        )
    for name in sorted(_existing(client) - {f"{RECORDS_DB}.{r.table}" for r in policy.records.values()}):
        if name.startswith(f"{RECORDS_DB}."):
            typer.echo(f"table {name}: {'exists' if name in before else 'created'} (DSR state, subject keys only)")
    for model in table_models(policy):
        columns = len(model.analyst_columns())
        hides = "restricted/objecting subjects hidden" if model.has_subject_keys else "no personal data"
        typer.echo(
            f"view {ANALYST_DB}.{model.name}: {'replaced' if f'{ANALYST_DB}.{model.name}' in before else 'created'}; "
            f"{columns} columns, no direct identifier, {hides}"
        )


def _validate_access(client: Client) -> int:
    count = 0
    for statement in access_statements():
        try:
            client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})
        except Exception as exc:
            raise ClickHouseError(f"access statement does not parse: {statement[:80]}...: {exc}") from exc
        count += 1
    return count


def _check_owned(settings: Settings, client: Client) -> None:
    owner = read_owner(settings.chdb_path)
    who = f"pid {owner.pid}, {owner.url()}" if owner else "another process"
    missing = sorted(
        {f"{RECORDS_DB}.{m.name}" for m in table_models()} | {f"{ANALYST_DB}.{m.name}" for m in table_models()}
    )
    missing = [name for name in missing if name not in _existing(client)]
    if missing:
        raise ClickHouseError(
            f"the running sink ({who}) owns the store but {', '.join(missing[:3])} is missing; "
            "stop the sink and run `records clickhouse init`"
        )
    typer.echo(f"owned by the running sink ({who}), which applied the DDL at start: every table and view is present")

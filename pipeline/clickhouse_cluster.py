"""The storage model on a replicated, sharded ClickHouse cluster, derived from the
single-node statements of pipeline/clickhouse_ddl.py, so a column or TTL change there
flows into both (tests check the tables and TTLs are the same).

On a cluster named C (a `remote_servers` entry, with the `{shard}` and `{replica}`
macros set on every node, e.g. by the Altinity operator):
- every record table T becomes `records.T_local`, a ReplicatedReplacingMergeTree with
  T's columns, version, partitions, order, index and TTL, one replica set per shard; and
  `records.T`, a Distributed table over `T_local` sharded by `cityHash64(<row id>)`: all
  versions of one row id land on one shard, so ReplacingMergeTree's dedup and FINAL stay
  correct shard by shard. The sink inserts into and readers query `records.T`, as on
  one node;
- the DSR state tables (subject restrictions, erased-keys table) are small and read by every
  shard (analyst views, the insert guard), so they are not sharded: one replica set over
  every node of the cluster, under their usual names;
- databases and analyst views are created on every node; the views read `records.T`
  FINAL exactly as on one node.
All statements carry ON CLUSTER C and are idempotent.

Mutations (erasure, rectification, consent clearing, retention) must address the local
tables: `cluster_mutation` turns a single-node `ALTER TABLE records.T ...` into `ALTER
TABLE records.T_local ON CLUSTER C ... SETTINGS mutations_sync = 2`, which runs on one
replica of every shard and returns when every replica has applied it. Statements on the
DSR state tables stay as they are (replication carries them to every node) and get
`mutations_sync = 2`. Counting queries need no change: they read the Distributed tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.clickhouse_ddl import (
    ANALYST_DB,
    DSR_EXECUTED_TABLE,
    ERASED_KEYS_TABLE,
    ERASURE_PROGRESS_TABLE,
    RECORDING_CHECKS_TABLE,
    RECORDS_DB,
    RESTRICTIONS_TABLE,
    TableModel,
    access_statements,
    statements,
    support_tables,
    table_models,
)
from pipeline.exceptions import ConfigError
from pipeline.policy import Policy
from pipeline.schemas import SchemaCatalog

LOCAL_SUFFIX = "_local"
# Keeper paths: sharded tables have one replica set per shard, the DSR state tables one
# over the whole cluster. `{shard}` and `{replica}` are the nodes' macros.
SHARDED_PATH = "/clickhouse/tables/{{shard}}/{database}/{table}"
EVERYWHERE_PATH = "/clickhouse/tables/all/{database}/{table}"
REPLICATED_EVERYWHERE = (
    RESTRICTIONS_TABLE,
    ERASED_KEYS_TABLE,
    DSR_EXECUTED_TABLE,
    ERASURE_PROGRESS_TABLE,
    RECORDING_CHECKS_TABLE,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_ENGINE = re.compile(r"^ENGINE = ReplacingMergeTree\((?P<version>[^)]*)\)$", re.MULTILINE)
_ALTER = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<table>\w+)(?P<rest>\s.*)$", re.DOTALL)
_SETTINGS = re.compile(r"\sSETTINGS\s+(?P<settings>[^()]*)$")


@dataclass(frozen=True)
class Cluster:
    """A ClickHouse cluster by its name in the servers' `remote_servers` configuration."""

    name: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError("CLICKHOUSE_CLUSTER must be a cluster name (letters, digits, '_' or '-')")

    @property
    def on(self) -> str:
        return f"ON CLUSTER {_quote(self.name)}"


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"`{name}`"


def local_table(table: str) -> str:
    return f"{table}{LOCAL_SUFFIX}"


def _replicated(statement: str, table: str, new_table: str, path: str, cluster: Cluster) -> str:
    """A single-node CREATE TABLE of `records.<table>` as a replicated table `new_table`."""
    head = f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{table}\n"
    engine = _ENGINE.search(statement)
    if not statement.startswith(head) or engine is None:
        raise ValueError(f"unexpected single-node DDL for {RECORDS_DB}.{table}: {statement[:60]!r}")
    keeper = path.format(database=RECORDS_DB, table=new_table)
    version = engine.group("version").strip()
    args = f"'{keeper}', '{{replica}}'" + (f", {version}" if version else "")
    body = statement[len(head) :]
    body = (
        body[: engine.start() - len(head)]
        + f"ENGINE = ReplicatedReplacingMergeTree({args})"
        + body[engine.end() - len(head) :]
    )
    return f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{new_table} {cluster.on}\n{body}"


def local_create_table(model: TableModel, cluster: Cluster) -> str:
    """`records.<table>_local`: the single-node table, replicated per shard."""
    return _replicated(model.create_table(), model.name, local_table(model.name), SHARDED_PATH, cluster)


def distributed_create_table(model: TableModel, cluster: Cluster) -> str:
    """`records.<table>`: the cluster-wide table, one row id always on one shard."""
    return (
        f"CREATE TABLE IF NOT EXISTS {model.qualified} {cluster.on} AS {RECORDS_DB}.{local_table(model.name)}\n"
        f"ENGINE = Distributed({_quote(cluster.name)}, {RECORDS_DB}, {local_table(model.name)}, "
        f"cityHash64({model.id_column}))"
    )


def _support_table(statement: str, cluster: Cluster) -> str:
    if statement.startswith("RENAME TABLE IF EXISTS "):  # a table's former name: on every replica
        return f"{statement} {cluster.on}"
    for table in REPLICATED_EVERYWHERE:
        if statement.startswith(f"CREATE TABLE IF NOT EXISTS {RECORDS_DB}.{table}\n"):
            return _replicated(statement, table, table, EVERYWHERE_PATH, cluster)
        alter = f"ALTER TABLE {RECORDS_DB}.{table} "
        if statement.startswith(alter):  # a migration of the table's shape: on every replica
            return f"{alter}{cluster.on} {statement[len(alter) :]}"
    raise ValueError(f"unexpected support table DDL: {statement[:60]!r}")


def _on_cluster_prefix(statement: str, prefix: str, cluster: Cluster) -> str:
    if not statement.startswith(prefix):
        raise ValueError(f"unexpected DDL: {statement[:60]!r}")
    return f"{prefix} {cluster.on}{statement[len(prefix) :]}"


def cluster_statements(
    cluster: Cluster, policy: Policy | None = None, catalog: SchemaCatalog | None = None
) -> Iterator[str]:
    """Every DDL statement of the storage model on `cluster`, in order; each idempotent.
    The single-node `statements()` in the same order, each replaced by its cluster form
    (a record table by its local and its Distributed table)."""
    models = {model.qualified: model for model in table_models(policy, catalog)}
    supports = set(support_tables())
    for statement in statements(policy, catalog):
        first = statement.split("\n", 1)[0]
        if first.startswith("CREATE DATABASE IF NOT EXISTS "):
            yield f"{first} {cluster.on}"
        elif statement in supports:
            yield _support_table(statement, cluster)
        elif first.startswith("CREATE TABLE IF NOT EXISTS ") and first.split()[-1] in models:
            model = models[first.split()[-1]]
            yield local_create_table(model, cluster)
            yield distributed_create_table(model, cluster)
        elif (
            first.startswith("ALTER TABLE ")
            and (" MODIFY TTL " in first or " MODIFY SETTING " in first)
            and first.split()[2] in models
        ):
            # the TTL and the MergeTree settings live on the local tables; the Distributed table has none
            model = models[first.split()[2]]
            local = f"{RECORDS_DB}.{local_table(model.name)}"
            yield _on_cluster_prefix(statement.replace(model.qualified, local, 1), f"ALTER TABLE {local}", cluster)
        elif first.startswith("ALTER TABLE ") and " ADD COLUMN " in first and first.split()[2] in models:
            # a column the schema gained: on the local tables and the Distributed one over them
            model = models[first.split()[2]]
            local = f"{RECORDS_DB}.{local_table(model.name)}"
            yield _on_cluster_prefix(statement.replace(model.qualified, local, 1), f"ALTER TABLE {local}", cluster)
            yield _on_cluster_prefix(statement, f"ALTER TABLE {model.qualified}", cluster)
        elif first.startswith(f"CREATE OR REPLACE VIEW {ANALYST_DB}."):
            view = first.split()[4]
            yield _on_cluster_prefix(statement, f"CREATE OR REPLACE VIEW {view}", cluster)
        else:
            raise ValueError(f"no cluster form for DDL: {first!r}")


def cluster_access_statements(
    cluster: Cluster, policy: Policy | None = None, catalog: SchemaCatalog | None = None
) -> Iterator[str]:
    """The single-node `access_statements()` on every node of `cluster`: roles, grants and
    view definers ON CLUSTER; each row policy on both the Distributed and the local table,
    so it holds whether a query reaches the rows through one or the other."""
    for statement in access_statements(policy, catalog):
        if statement.startswith("CREATE ROLE IF NOT EXISTS "):
            yield f"{statement} {cluster.on}"
        elif statement.startswith("GRANT "):
            yield f"GRANT {cluster.on} {statement[len('GRANT ') :]}"
        elif statement.startswith(f"ALTER TABLE {ANALYST_DB}."):
            view = statement.split()[2]
            yield _on_cluster_prefix(statement, f"ALTER TABLE {view}", cluster)
        elif statement.startswith("CREATE ROW POLICY OR REPLACE "):
            match = re.match(r"CREATE ROW POLICY OR REPLACE (\w+) ON (\w+)\.(\w+) (.*)$", statement, re.DOTALL)
            if match is None:
                raise ValueError(f"unexpected row policy: {statement[:60]!r}")
            name, db, table, rest = match.groups()
            yield (
                f"CREATE ROW POLICY OR REPLACE {name} {cluster.on} ON {db}.{table}, {db}.{local_table(table)} {rest}"
            )
        else:
            raise ValueError(f"no cluster form for access statement: {statement[:60]!r}")


def cluster_mutation(statement: str, cluster: Cluster) -> str:
    """A single-node mutation (`ALTER TABLE records.<table> ...`) as it must run on the
    cluster: on the local tables of every shard (ON CLUSTER), synchronously on every
    replica (`mutations_sync = 2`). DSR state tables keep their name and no ON CLUSTER
    (one replica set spans the cluster, so replication carries the mutation everywhere)."""
    match = _ALTER.match(statement)
    if match is None or match.group("db") != RECORDS_DB:
        raise ValueError(f"not a mutation of a {RECORDS_DB} table: {statement[:60]!r}")
    table, rest = match.group("table"), match.group("rest")
    # DROP PARTITION is not a mutation: `alter_sync` makes it wait for every replica.
    sync = "alter_sync" if re.match(r"\s+DROP PARTITION", rest) else "mutations_sync"
    settings = _SETTINGS.search(rest)
    if settings is None:
        rest = f"{rest} SETTINGS {sync} = 2"
    elif sync not in settings.group("settings"):
        rest = f"{rest}, {sync} = 2"
    if table in REPLICATED_EVERYWHERE:
        return f"ALTER TABLE {RECORDS_DB}.{table}{rest}"
    return f"ALTER TABLE {RECORDS_DB}.{local_table(table)} {cluster.on}{rest}"


def mutation_for(statement: str, cluster: str | None) -> str:
    """A single-node mutation as the configured target runs it: unchanged on one server or
    the embedded engine, `cluster_mutation` on a cluster (CLICKHOUSE_CLUSTER)."""
    return cluster_mutation(statement, Cluster(cluster)) if cluster else statement


# ---- the other statements a DSR or the retention job sends --------------------------------

_OPTIMIZE = re.compile(r"^OPTIMIZE TABLE (?P<db>\w+)\.(?P<table>\w+)(?P<rest>\s.*)$", re.DOTALL)
_INSERT_SELECT = re.compile(
    r"^INSERT INTO (?P<target>\w+\.\w+) (?P<columns>\([^)]*\)) (?P<select>SELECT\s.*)$", re.DOTALL
)
_AGGREGATE = re.compile(
    r"^SELECT (?P<what>.+?) FROM (?P<db>\w+)\.(?P<table>\w+)(?P<final> FINAL)?(?P<rest>(?: WHERE .*)?)$", re.DOTALL
)


def cluster_optimize(statement: str, cluster: Cluster) -> str:
    """A single-node `OPTIMIZE TABLE records.<table> ...` on the cluster: the Distributed
    table cannot be optimized, so the local tables ON CLUSTER. For a replicated table the
    DDL worker runs it on one replica per shard (the merge is replicated to the others) and
    `alter_sync = 2` returns when every replica has merged. A shard without the partition
    has nothing to merge (no error)."""
    match = _OPTIMIZE.match(statement)
    if match is None or match.group("db") != RECORDS_DB:
        raise ValueError(f"not an OPTIMIZE of a {RECORDS_DB} table: {statement[:60]!r}")
    table = match.group("table")
    target = table if table in REPLICATED_EVERYWHERE else f"{local_table(table)} {cluster.on}"
    return f"OPTIMIZE TABLE {RECORDS_DB}.{target}{match.group('rest')} SETTINGS alter_sync = 2"


def cluster_insert_select(statement: str) -> str:
    """A single-node `INSERT INTO records.<table> (...) SELECT ...` (new row versions: a
    rectification) on the cluster. It still goes to the Distributed table, which sends each
    row to the shard of `cityHash64(<row id>)`: a new version has its row's id, so it lands
    on the shard holding the row's older versions, and FINAL and the merge see them together
    (as long as the cluster's shards and weights are those the rows were written with).
    `distributed_foreground_insert = 1`: the rows are on their shards when the statement
    returns, not queued on this node, so a merge that follows finds them."""
    match = _INSERT_SELECT.match(statement)
    if match is None or not match.group("target").startswith(f"{RECORDS_DB}."):
        raise ValueError(f"not an INSERT ... SELECT into a {RECORDS_DB} table: {statement[:60]!r}")
    target, columns, select = match.group("target", "columns", "select")
    return f"INSERT INTO {target} {columns} SETTINGS distributed_foreground_insert = 1 {select}"


def statement_for(statement: str, cluster: str | None) -> str:
    """Any statement a DSR or the retention job sends, as the configured target runs it:
    unchanged without a cluster; on a cluster mutations and OPTIMIZE go to the local tables
    ON CLUSTER and inserts of new versions wait for their shards. Reads need no change."""
    if not cluster:
        return statement
    if statement.startswith("ALTER TABLE "):
        return cluster_mutation(statement, Cluster(cluster))
    if statement.startswith("OPTIMIZE TABLE "):
        return cluster_optimize(statement, Cluster(cluster))
    if statement.startswith("INSERT INTO "):
        return cluster_insert_select(statement)
    return statement


def per_shard(select: str, cluster: str | None, *, every_replica: bool = False) -> str:
    """A single-node aggregate `SELECT <aggregates> FROM records.<table> [FINAL] [WHERE ...]`
    per shard: `shardNum()` first, one row per shard, in shard order. On a cluster it reads
    the local tables through `cluster()` (one replica per shard) or, with `every_replica`,
    `clusterAllReplicas()` (every replica: what is left anywhere); `shardNum()` is the
    shard's number in the cluster (1, 2, ...). Without a cluster it reads the table itself
    and the one node is shard 0. Nothing personal is added: the caller's aggregates only."""
    match = _AGGREGATE.match(select)
    if match is None or match.group("db") != RECORDS_DB:
        raise ValueError(f"not an aggregate over a {RECORDS_DB} table: {select[:60]!r}")
    table = match.group("table")
    source = f"{RECORDS_DB}.{table}"
    if cluster:
        function = "clusterAllReplicas" if every_replica else "cluster"
        source = f"{function}('{Cluster(cluster).name}', {RECORDS_DB}, {local_table(table)})"
    final = match.group("final") or ""
    return (
        f"SELECT shardNum() AS shard, {match.group('what')} FROM {source}{final}{match.group('rest')} "
        "GROUP BY shard ORDER BY shard"
    )

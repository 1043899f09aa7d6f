"""A request's rows per shard, on a ClickHouse cluster (CLICKHOUSE_CLUSTER): what the
receipt's `shard_counts` says (an erasure: the rows it deleted; any other request: the
subject's rows when it completed), and the check that no replica still holds an erased row.

Every version of a row lands on the shard of `cityHash64(<row id>)` (the Distributed
tables of pipeline/clickhouse_cluster.py), so counting distinct row ids per shard and
summing gives the receipt's `store_counts`. Before the mutations the sink counts through
`cluster()` (one replica per shard); after them through `clusterAllReplicas()`, and a
shard where any replica still holds a row the erasure deletes fails the batch (the sink
retries it: every step is idempotent). Counts only: no key or value leaves ClickHouse
and no log line or error names one. The SQL is the single-node count query
(sink/dsr_storage.py) grouped by `shardNum()` (pipeline/clickhouse_cluster.py: per_shard);
without a cluster it reads the table itself as shard 0, which is how it is tested here.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_cluster import per_shard
from pipeline.clickhouse_ddl import TableModel
from sink.dsr_storage import Erasure, count_query, store_name, subject_rows_count
from sink.exceptions import SinkError

ShardCounts = dict[str, dict[str, int]]  # store -> shard number (text, as Avro map keys are) -> rows
_QUERY = {"max_query_size": str(16 * 1024 * 1024)}


class ErasureIncomplete(SinkError):
    """A replica still holds rows an erasure deleted; the sink retries the batch."""


def shard_count_query(model: TableModel, erasures: Sequence[Erasure], cluster: str | None, *, after: bool) -> str:
    """Per shard: the rows the erasures delete, then per erasure its distinct rows (before:
    one replica per shard; `after`: every replica, what is left anywhere)."""
    return per_shard(count_query(model, erasures), cluster, every_replica=after)


def counts_per_shard(
    client: Client,
    models: Sequence[TableModel],
    request_ids: Sequence[str],
    erasures: Sequence[Erasure],
    cluster: str | None,
) -> dict[str, ShardCounts]:
    """request id -> store -> shard -> distinct rows of its subject, for the stores and
    shards holding any (`request_ids` and `erasures` in the same order)."""
    out: dict[str, ShardCounts] = {request_id: {} for request_id in request_ids}
    for model in models:
        query = shard_count_query(model, erasures, cluster, after=False)
        for shard, _total, *per_erasure in client.query(query, settings=_QUERY).result_rows:
            for request_id, rows in zip(request_ids, per_erasure, strict=True):
                if rows:
                    out[request_id].setdefault(store_name(model), {})[str(shard)] = int(rows)
    return out


def subject_rows_per_shard(
    client: Client, models: Sequence[TableModel], keys: Sequence[str], cluster: str | None
) -> ShardCounts:
    """store -> shard -> the subject's rows (deduplicated: FINAL, which is correct shard by
    shard) where it has any: the receipt of a request other than an erasure."""
    out: ShardCounts = {}
    for model in models:
        query = per_shard(subject_rows_count(model, keys), cluster)
        for shard, rows in client.query(query, settings=_QUERY).result_rows:
            if rows:
                out.setdefault(store_name(model), {})[str(shard)] = int(rows)
    return out


def left_per_shard(
    client: Client, models: Sequence[TableModel], erasures: Sequence[Erasure], cluster: str | None
) -> list[str]:
    """`<store> on shard <n>` wherever a replica still holds a row the erasures delete."""
    left = []
    for model in models:
        query = shard_count_query(model, erasures, cluster, after=True)
        for shard, total, *_ in client.query(query, settings=_QUERY).result_rows:
            if total:
                left.append(f"{store_name(model)} on shard {shard}")
    return left


def check_nothing_left(
    client: Client, models: Sequence[TableModel], erasures: Sequence[Erasure], cluster: str | None
) -> None:
    """Raise ErasureIncomplete (retried) when a replica of a shard still holds a deleted row."""
    left = left_per_shard(client, models, erasures, cluster)
    if left:
        raise ErasureIncomplete(f"erasure not applied on every replica: rows remain in {', '.join(left)}")

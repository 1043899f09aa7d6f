"""The cluster storage model on a one-shard cluster inside the embedded engine (chDB), so
the cluster form of the reads and inserts runs on the real engine here.

chDB accepts a server configuration file (`config-file`): one declaring a
`remote_servers` cluster whose only replica is this process (host 127.0.0.1 and the
configured `tcp_port`, which chDB never opens) makes `Distributed` tables, `cluster()` and
`clusterAllReplicas()` execute locally, with `shardNum()` = 1. What chDB cannot run is
anything that needs Keeper: Replicated engines and `ON CLUSTER` statements (the engine
refuses those with code 392, "Replicated DDL queries are disabled"). So the model is the
one of pipeline/clickhouse_cluster.py with ON CLUSTER removed and each Replicated engine
as its non-replicated one; the Distributed tables, their sharding key and the analyst views
are the real ones.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from clickhouse_connect.driver._chdbclient import ChdbClient
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_cluster import Cluster, cluster_statements

CLUSTER = Cluster("records_cluster")
_REPLICATED = re.compile(r"ReplicatedReplacingMergeTree\('[^']*', '\{replica\}'(?:, )?")


def _unused_port() -> int:
    """A port nothing listens on (the configuration names one; chDB does not open it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def open_one_shard_cluster(chdb_path: Path, config_dir: Path) -> Client:
    """A client on a fresh chDB directory whose configuration declares CLUSTER (one shard,
    one replica: this process). Close it at teardown (one chDB directory per process)."""
    port = _unused_port()
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "one_shard_cluster.xml"
    config.write_text(
        "<clickhouse>\n"
        f"  <tcp_port>{port}</tcp_port>\n"
        f"  <remote_servers><{CLUSTER.name}><shard><replica>"
        f"<host>127.0.0.1</host><port>{port}</port>"
        f"</replica></shard></{CLUSTER.name}></remote_servers>\n"
        "</clickhouse>\n",
        encoding="utf-8",
    )
    client = ChdbClient(path=str(chdb_path), chdb_options={"config-file": str(config)})
    clusters = client.query("SELECT cluster, is_local FROM system.clusters").result_rows
    assert clusters == [(CLUSTER.name, 1)], clusters
    return client


def one_shard_statements() -> list[str]:
    """The cluster DDL as chDB can run it: without ON CLUSTER, tables not replicated."""
    return [
        _REPLICATED.sub("ReplacingMergeTree(", statement.replace(f" {CLUSTER.on}", ""))
        for statement in cluster_statements(CLUSTER)
    ]


def create_one_shard_model(client: Client) -> None:
    for statement in one_shard_statements():
        client.command(statement)

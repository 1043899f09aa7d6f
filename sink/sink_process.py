"""One sink process, start to stop (`records worker sink`).

1. open the store. Embedded mode: refuse if another process owns the chDB directory
   (one owner per directory), open it, apply the DDL (idempotent), and serve the
   read-only ClickHouse HTTP endpoint on 127.0.0.1 with the owner file next to the
   directory (pipeline/clickhouse_http.py), so `records sql` and ClickHouse tools reach
   the data while the sink holds it. Server mode: check that `records clickhouse init`
   has created the tables. The consumer subscribes before the DDL, so the group join
   (librdkafka's background thread) overlaps it;
2. expose the Prometheus metrics; install SIGTERM/SIGINT handlers;
3. run the sink (sink/clickhouse_sink.py) with the periodic jobs and command
   handlers the CLI composed (retention, DSR), all sharing one engine lock. Embedded, the
   sink is a static group member (its instance id derives from host and directory), so
   a restart after a crash resumes at once;
4. on the way out: remove the owner file, stop the endpoint, close the clients.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient
from prometheus_client import CollectorRegistry

from pipeline import gc_tuning
from pipeline.chdb_owner import read_owner, remove_owner, write_owner
from pipeline.clickhouse import describe_target, run_statement
from pipeline.clickhouse_ddl import ANALYST_DB, RECORDS_DB, statements, table_models
from pipeline.clickhouse_http import LOCALHOST, EmbeddedHttpServer
from pipeline.config import Settings
from pipeline.exceptions import ClickHouseError
from pipeline.private_files import private_dir, private_umask, restrict_tree
from pipeline.query_endpoint import QueryEndpoint, endpoint_for
from pipeline.serde import Serde
from sink.batch_writer import CommandHandler, InsertGuard
from sink.clickhouse_sink import ClickHouseSink
from sink.metrics import SinkMetrics, serve
from sink.sink_options import PeriodicJob, SinkOptions

log = logging.getLogger(__name__)


class StoreConnector(Protocol):
    """Opens a client of the configured store; `readonly` refuses writes and DDL."""

    def __call__(self, *, readonly: bool) -> Client: ...


@dataclass(frozen=True)
class EndpointOptions:
    """The embedded store's HTTP endpoint: port 0 picks a free one; enabled False: none."""

    enabled: bool = True
    port: int = 8123
    host: str = LOCALHOST


def apply_schema(client: Client) -> int:
    """Apply every DDL statement (idempotent); the number applied."""
    count = 0
    for statement in statements():
        run_statement(client, statement)
        count += 1
    return count


def missing_tables(client: Client) -> list[str]:
    """Tables and views of the storage model that the store lacks."""
    wanted = [f"{RECORDS_DB}.{m.name}" for m in table_models()] + [f"{ANALYST_DB}.{m.name}" for m in table_models()]
    result = run_statement(
        client, f"SELECT database || '.' || name FROM system.tables WHERE database IN ('{RECORDS_DB}', '{ANALYST_DB}')"
    )
    present = {row[0] for row in result.rows} if result is not None else set()
    return [name for name in wanted if name not in present]


def embedded_instance_id(settings: Settings) -> str:
    """A stable consumer-group instance id for the one sink of an embedded directory."""
    digest = hashlib.sha256(str(settings.chdb_path).encode()).hexdigest()[:12]
    return f"cs-clickhouse-sink-{socket.gethostname()}-{digest}"


def open_owned_store(settings: Settings, connect: StoreConnector) -> Client:
    """The writing client of the sink; embedded: only if no other process owns the directory."""
    if settings.embedded_clickhouse:
        owner = read_owner(settings.chdb_path)
        if owner is not None and owner.pid != os.getpid():
            raise ClickHouseError(
                f"embedded chDB at {settings.chdb_path} is already owned by pid {owner.pid} "
                f"(serving {owner.url()}): one sink per directory"
            )
    client = connect(readonly=False)
    if settings.embedded_clickhouse and isinstance(client, HttpClient):  # another process took it meanwhile
        client.close()
        raise ClickHouseError(f"embedded chDB at {settings.chdb_path} is owned by another process")
    return client


def _serve(query_endpoint: QueryEndpoint, endpoint: EndpointOptions) -> EmbeddedHttpServer:
    """The endpoint on its port, or on any free one if that is taken (the owner file says which)."""
    try:
        return EmbeddedHttpServer(query_endpoint, endpoint.host, endpoint.port)
    except ClickHouseError as exc:
        if endpoint.port == 0:
            raise
        log.warning("%s; serving on a free port instead (see the owner file)", exc)
        return EmbeddedHttpServer(query_endpoint, endpoint.host, 0)


def run_sink(
    settings: Settings,
    *,
    connect: StoreConnector,
    serde: Serde,
    options: SinkOptions | None = None,
    endpoint: EndpointOptions | None = None,
    maintenance: Iterable[PeriodicJob] = (),
    commands: Iterable[CommandHandler] = (),
    insert_guard: InsertGuard | None = None,
) -> None:
    """Run a sink process until SIGTERM/SIGINT (see the module docstring). Blocks.
    `connect` opens clients of the configured store (records/wiring.py)."""
    # Its state is personal data: created private, and what an older version left is tightened.
    private_umask()
    private_dir(settings.data_dir)
    for root in (settings.data_dir, settings.chdb_path):
        restrict_tree(root)
    endpoint = endpoint or EndpointOptions()
    lock = threading.RLock()
    client = open_owned_store(settings, connect)
    reader: Client | None = None
    server: EmbeddedHttpServer | None = None
    sink: ClickHouseSink | None = None
    try:
        options = options or SinkOptions()
        if settings.embedded_clickhouse and options.instance_id is None:
            options = replace(options, instance_id=embedded_instance_id(settings))
        if not settings.embedded_clickhouse:
            options = replace(options, sole_writer=False)  # the group's sinks share the store
        registry = CollectorRegistry()
        metrics = SinkMetrics.create(registry)
        sink = ClickHouseSink(
            settings,
            client,
            serde=serde,
            metrics=metrics,
            options=options,
            maintenance=maintenance,
            commands=commands,
            engine_lock=lock,
            insert_guard=insert_guard,
        )
        # Start-up: the group join runs in librdkafka's background while the DDL is applied
        # and the endpoint starts; nothing is consumed before `run`.
        sink.subscribe()
        if settings.embedded_clickhouse:
            applied = apply_schema(client)
            log.info("%s: %d DDL statements applied", describe_target(settings), applied)
            if endpoint.enabled:
                reader = connect(readonly=True)
                server = _serve(endpoint_for(settings, reader, lock), endpoint)
                server.start()
                write_owner(settings.chdb_path, endpoint.host, server.port)
                log.info("embedded store served read-only, users required, on http://%s:%d", endpoint.host, server.port)
        else:
            missing = missing_tables(client)
            if missing:
                raise ClickHouseError(
                    f"{describe_target(settings)} lacks {', '.join(missing[:3])}"
                    f"{' ...' if len(missing) > 3 else ''}: run `records clickhouse init` first"
                )
        serve(registry, settings.sink_metrics_port)
        install_signal_handlers(sink)
        gc_tuning.tune()  # fewer, cheaper collections per message (pipeline/gc_tuning.py)
        sink.run()
    finally:
        if sink is not None:
            sink.close()
        if settings.embedded_clickhouse:
            remove_owner(settings.chdb_path)
        if server is not None:
            server.close()
        if reader is not None:
            reader.close()
        client.close()
        log.info("sink stopped")


def install_signal_handlers(sink: ClickHouseSink) -> None:
    """SIGTERM and SIGINT stop the sink gracefully (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the batch in hand", signal.Signals(signum).name)
        sink.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

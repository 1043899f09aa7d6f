"""Data-subject requests in the fault tests: signed with the pipeline's DPO key and
produced as `records dsr ...` produces them, and the store read through the running sink
(what a request left behind: rows of its subject, its receipt)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from pipeline import topics
from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import table_models
from pipeline.config import load_settings
from pipeline.dsr import RequestType, build_request, utcnow
from pipeline.serde import Serde
from tests.support.pipeline_harness import Secrets

# Every record table that holds subject keys (what an erasure must empty of the subject).
SUBJECT_TABLES = tuple(model.name for model in table_models() if model.has_subject_keys)


def send_request(bootstrap: str, keys: Secrets, request_type: RequestType, **identifiers: str) -> str:
    """Sign and produce one request on cs.dsr.v1; its request id."""
    request = build_request(request_type, identifiers, requested_by="fault-test", reason="TEST", now=utcnow())
    signed = keys.signer.sign(request)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topics.DSR.name, Serde().encoder("DataSubjectRequest")(signed), key=signed["request_id"].encode())
    assert producer.flush(30) == 0
    return str(signed["request_id"])


@contextlib.contextmanager
def store_client(chdb_path: Path) -> Iterator[Client]:
    """A read-only client of the store, through the running sink's endpoint."""
    settings = load_settings({"RECORDS_CHDB_PATH": str(chdb_path), "RECORDS_DATA_DIR": str(chdb_path.parent)})
    with connect(settings, readonly=True) as client:
        yield client


def subject_rows(client: Client, keys: Sequence[str], final: str = "FINAL") -> dict[str, int]:
    """Rows of the subject with `keys` per table (FINAL: rows, not stored versions)."""
    return {
        table: int(
            client.command(
                f"SELECT count() FROM records.{table} {final} WHERE hasAny(subject_keys, {{k:Array(String)}})",
                parameters={"k": list(keys)},
            )
        )
        for table in SUBJECT_TABLES
    }


def executed(client: Client, request_id: str) -> list[dict[str, Any]]:
    """Every stored version of the sink's record of `request_id` (records.dsr_executed, not FINAL)."""
    result = client.query(
        "SELECT status, store_counts FROM records.dsr_executed WHERE request_id = {r:String}",
        parameters={"r": request_id},
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def receipts(client: Client, request_id: str) -> list[dict[str, Any]]:
    """The receipts of `request_id` in records.dsr_receipts (filled from cs.dsr.receipts.v1), FINAL."""
    result = client.query(
        "SELECT status, store_counts FROM records.dsr_receipts FINAL WHERE request_id = {r:String}",
        parameters={"r": request_id},
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

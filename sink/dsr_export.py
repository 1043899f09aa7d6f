"""ACCESS (GDPR Art. 15) and portability (Art. 20): everything the stores hold about one
subject, as one JSON document for the DPO.

The document states what the notice commits to, from the policy (controller, contact,
purposes, legal bases, recipients, transfers, automated decisions), then per record
type: its description, retention period, the category and legal basis of each field
(and which consent or cookie choice a field needs), and every row of the subject with
all its columns (timestamps ISO-8601 UTC). The consent ledger's rows are the subject's
consent history. JSON is the machine-readable format Art. 20 asks for.

The file is <RECORDS_DATA_DIR>/exports/<request_id>.json, mode 0600 in a 0700
directory, written atomically (temporary file, then rename), so the DPO never picks up
half a file; the receipt names the path, never the content. It holds the subject's
personal data, so it expires: removed after the policy's `exports.retention_days`, and
at once when the subject is erased (pipeline/exports.py). In production this directory
is a secured volume (or an object store the DPO's tooling reads) with its own access
control, not the sink's scratch disk. Rows can hold other people's data too (the agent who answered a
call): the DPO reviews the export before handing it over (Art. 15(4)).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.avro_json import to_jsonable
from pipeline.clickhouse_ddl import TableModel
from pipeline.exports import exports_dir
from pipeline.policy import Policy
from sink.dsr_storage import DsrCommandError, export_query, store_name, subject_tables

CONSENT_LEDGER_RECORD_TYPE = "consent_ledger"


def export_path(data_dir: Path, request_id: str) -> Path:
    """Where the export of a request goes; the request id must be a UUID (it names a file)."""
    try:
        canonical = str(uuid.UUID(request_id))
    except ValueError:
        raise DsrCommandError("the request id is not a UUID") from None
    return exports_dir(data_dir) / f"{canonical}.json"


def collect(client: Client, models: Iterable[TableModel], keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the subject per table (records.* with subject keys), deduplicated."""
    out: dict[str, list[dict[str, Any]]] = {}
    for model in subject_tables(models):
        result = client.query(export_query(model, keys))
        out[model.name] = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    return out


def document(
    policy: Policy,
    models: Iterable[TableModel],
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    request_id: str,
    issued_at: datetime,
    generated_at: datetime,
) -> dict[str, Any]:
    """The export: the notice's commitments, then each record type with its rules and rows."""
    notice = policy.notice
    records: dict[str, Any] = {}
    consent_history: list[Mapping[str, Any]] = []
    for model in subject_tables(models):
        record = model.record
        table_rows = list(rows.get(model.name, ()))
        if record.record_type == CONSENT_LEDGER_RECORD_TYPE:
            consent_history = table_rows
        records[record.record_type] = {
            "store": store_name(model),
            "description": record.description,
            "retention": record.period.label,
            "retention_days": record.retention_days,
            "time_field": record.time_field,
            "fields": {
                name: {
                    "category": rule.category,
                    "legal_basis": rule.basis,
                    **({"needs": rule.needs} if rule.needs else {}),
                    **({"channels": list(rule.channels)} if rule.channels else {}),
                }
                for name, rule in record.fields.items()
            },
            "row_count": len(table_rows),
            "rows": table_rows,
        }
    return to_jsonable(
        {
            "request_id": request_id,
            "request_type": "ACCESS",
            "requested_at": issued_at,
            "generated_at": generated_at,
            "controller": notice.controller,
            "contact": notice.contact,
            "purposes": list(notice.purposes),
            "legal_bases": list(notice.legal_bases),
            "recipients": list(notice.recipients),
            "transfers": notice.transfers,
            "automated_decisions": notice.automated_decisions,
            "records": records,
            "consent_history": consent_history,
        },
        bytes_as_text=True,
    )


def write_export(path: Path, content: Mapping[str, Any]) -> Path:
    """Write the document atomically, mode 0600, in a 0700 directory; returns `path`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle, ensure_ascii=False, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path

"""sink/clear_before_insert.py, step 3: which rows of a batch a held denial covers. Rows are
read straight from their Avro bodies when the writer schema allows it, else decoded; both
readers must pick the same rows. (Storing them cleared is the writer's, through the real
engine: tests/integration/test_sink_withdrawals.py and test_sink.py.)"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.clickhouse_ddl import table_models
from pipeline.schemas import AvroSchema
from pipeline.serde import AvroSerializer
from sink.avro_container import SINGLE_OBJECT_PREFIX
from sink.batch import Group
from sink.clear_before_insert import ClearBeforeInsert
from sink.consent_withdrawal import ConsentBoundTable, consent_bound, ledger_model
from sink.denial_state import has_key_prefix
from sink.metrics import SinkMetrics
from tests.support.stored_records import NOW, record

MODELS = table_models()
CHATS = next(t for t in (consent_bound(m) for m in MODELS) if t is not None and t.model.name == "chat_conversations")
WITHDRAWN_MS = int((NOW + timedelta(minutes=30)).timestamp() * 1000)


def _memory() -> ClearBeforeInsert:
    memory = ClearBeforeInsert([CHATS], ledger_model(MODELS), SinkMetrics.create(CollectorRegistry()))
    memory.state.note([b"key-a"], "contact_consent", WITHDRAWN_MS)
    memory.state.note([b"key-c"], "cookie.analytics", WITHDRAWN_MS)
    memory.state.loaded = True  # as if loaded from the store
    return memory


def _rows() -> list[dict[str, Any]]:
    schema = CHATS.model.schema
    return [
        record(schema, 1, subject_keys=["key-a"], started_at=NOW),  # covered
        record(schema, 2, subject_keys=["key-a"], started_at=NOW + timedelta(minutes=30)),  # covered (<=)
        record(schema, 3, subject_keys=["key-a"], started_at=NOW + timedelta(minutes=31)),  # after: not
        record(schema, 4, subject_keys=["key-a"], started_at=NOW, channel="MYSTAFF_APP"),  # no rule: not
        record(schema, 5, subject_keys=["key-b"], started_at=NOW),  # no denial
        record(schema, 6, subject_keys=["other", "key-c"], started_at=NOW),  # analytics, any channel
    ]


def _covered(table: ConsentBoundTable, writer: AvroSchema) -> dict[str, set[str]]:
    group = Group(table.model, writer, collect_ids=False)
    serialize = AvroSerializer(writer)
    for value in _rows():
        group.add(serialize(value)[SINGLE_OBJECT_PREFIX:], None)  # type: ignore[arg-type]
    group.add(b"\x02", None)  # type: ignore[arg-type]  # truncated: left to the insert step
    covered: dict[str, set[str]] = {}
    _memory()._cover_group(table, group, covered)
    return covered


def test_a_denial_covers_the_rows_of_its_keys_up_to_its_time_in_the_channels_of_its_rules() -> None:
    assert has_key_prefix(CHATS.model.schema)
    assert _covered(CHATS, CHATS.model.schema) == {
        "contact_consent": {"event_id-1", "event_id-2"},
        "cookie.analytics": {"event_id-6"},
    }


def test_a_writer_the_body_readers_cannot_skip_is_decoded_and_covers_the_same_rows() -> None:
    definition = copy.deepcopy(CHATS.model.schema.definition)
    fields = definition["fields"]
    fields.insert(0, fields.pop(next(i for i, f in enumerate(fields) if f["name"] == "subject_keys")))
    reordered = AvroSchema.from_definition(definition)
    assert not has_key_prefix(reordered)
    assert _covered(CHATS, reordered) == _covered(CHATS, CHATS.model.schema)

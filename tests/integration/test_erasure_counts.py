"""The erasure's one count query over every table (sink/dsr_storage.py `counts_query`), on
the real engine: a row per table, in any order, each naming its table's position and
holding what that table's own count query says (the rows the mutation deletes, then each
erasure's distinct rows), tables without a row of the subjects included."""

from __future__ import annotations

from datetime import timedelta

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse_ddl import table_models
from sink.dsr_storage import count_query, counts_query, subject_tables
from sink.sink_process import apply_schema
from tests.support.stored_records import NOW, record


def test_one_query_counts_every_table_as_its_own_query_does(ch_client: Client) -> None:
    apply_schema(ch_client)
    tables = subject_tables(table_models())
    by_name = {m.name: m for m in tables}
    stored = {"calls": ["anna", "anna", "bert", "other"], "chat_messages": ["anna", "other"]}
    for name, subjects in stored.items():
        model = by_name[name]
        columns = [c.name for c in model.columns]
        rows = [record(model.schema, n, subject_keys=[f"key-{s}"]) for n, s in enumerate(subjects)]
        ch_client.insert(model.qualified, [[row[c] for c in columns] for row in rows], column_names=columns)
    # both erasures at or after the rows' ingestion (NOW); key-nobody holds no row
    erasures = [({"key-anna"}, NOW + timedelta(minutes=1)), ({"key-bert", "key-nobody"}, NOW)]

    rows = ch_client.query(counts_query(tables, erasures)).result_rows

    assert sorted(row[0] for row in rows) == list(range(len(tables)))
    by_position = {row[0]: tuple(row[1:]) for row in rows}
    for position, model in enumerate(tables):
        assert by_position[position] == tuple(ch_client.query(count_query(model, erasures)).result_rows[0])
    assert by_position[tables.index(by_name["calls"])] == (3, 2, 1)
    assert by_position[tables.index(by_name["chat_messages"])] == (1, 1, 0)
    assert by_position[tables.index(by_name["contact_forms"])] == (0, 0, 0)

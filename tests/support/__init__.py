"""What the tests share, and the only test code a test module may import
(tests/unit/test_test_layout.py fails otherwise).

- `kafka_fixtures`, `clickhouse_fixtures`: pytest plugins (registered in tests/conftest.py)
  for the real local broker and the real embedded engine (chDB).
- `cli`: `run_records`, the one runner of the `records` CLI as a user runs it, and the
  environments it runs in.
- `kafka_offsets`, `kafka_reads`: end offsets, consumer-group lag, positioning a group at
  the end of its inputs; reading topics back.
- `stored_records`: values of the stored *Record schemas (what the sink writes).
- `raw_events`: one subject's raw events, for the pure streams tests; `contact_forms`:
  one person's contact-form submission.
- `streams_traffic`, `worker_secrets`, `processes`: the traffic, pepper and DPO key of the
  worker tests, and `records worker sink` / `records worker streams` as subprocesses.
- `avro_strategies`, `metrics`: hypothesis strategies for any Avro schema; metric sums.
- `golden`: the generated expected outputs in tests/golden/ (`*.golden`), compared and
  regenerated (`RECORDS_UPDATE_GOLDEN=1`).
- `dpo_pipeline`: both workers and `records dsr ...` for the DSR end-to-end tests (the
  `dpo_line` fixture); `streams_worker`: the brokerless StreamsWorker of the unit tests.
- `report_lines`: the compliance report's line ids the report tests expect.
"""

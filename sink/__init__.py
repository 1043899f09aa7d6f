"""Kafka -> ClickHouse: the sink (`records worker sink`).

- `clickhouse_sink`: the loop: consumer group, batching, the commit path, retries with
  paused partitions, rebalances, shutdown and the periodic jobs the CLI plugs in;
- `batch_writer`: `BatchWriter.write(batch)`: inserts, consent withdrawals, the command
  handlers the CLI plugs in (DSR work) and dead letters; no consumer, no offsets;
- `batch`: what one batch holds (Avro bodies per table and writer schema, offsets, dead
  letters), pure;
- `avro_container`: single-object messages -> one Avro object container, pure;
- `select_insert`: how a container is stored: as it is, or through an INSERT ... SELECT
  with a row filter (the erasure guard) and clearing column expressions;
- `consent_withdrawal`: the storage side of a consent withdrawal, as SQL, pure;
- `metrics`: the sink's Prometheus bundle;
- `sink_process`: one `records worker sink` process: store ownership, DDL, the embedded
  HTTP endpoint, signals;
- `dsr_*`, `erasure_guard`: the storage side of data-subject requests, plugged into the
  sink as a `CommandHandler` by the CLI.

Imports `pipeline` only, never `streams`, `retention_jobs` or `records`: the application
layer (records/wiring.py, records/cli) composes them.
"""

"""Shared core of the records pipeline: configuration, policy, serde, subject keys,
Kafka and ClickHouse adapters, and the `records` CLI."""

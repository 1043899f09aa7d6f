"""Shared fixtures. Kafka fixtures (a real local broker) and ClickHouse fixtures (a real
embedded chDB engine) live in their own plugin modules."""

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_clickhouse"]

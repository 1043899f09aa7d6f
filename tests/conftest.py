"""Shared fixtures, registered as plugins from tests/support: the Kafka fixtures (a real
local broker) and the ClickHouse fixtures (a real embedded chDB engine)."""

pytest_plugins = ["tests.support.kafka_fixtures", "tests.support.clickhouse_fixtures"]

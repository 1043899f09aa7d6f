"""Shared fixtures. Kafka fixtures (a real local broker) and ClickHouse fixtures (a real
embedded chDB engine) live in their own plugin modules."""

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_clickhouse"]

from hypothesis import settings  # noqa: E402

# No per-example deadline: on a loaded 2-core machine a first example can take longer than
# hypothesis' 200 ms for reasons that have nothing to do with the code under test.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

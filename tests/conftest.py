"""Shared fixtures, registered as plugins from tests/support: the Kafka fixtures (a real
local broker), the ClickHouse fixtures (a real embedded chDB engine) and `dpo_line` (the
workers and the DPO's CLI of the DSR end-to-end tests).

Hypothesis runs without its per-example deadline: timings are benchmarks (bench/), not
asserts, and on a shared 2-core machine one example can take longer than the default
200 ms with nothing wrong (a DeadlineExceeded there is noise, not a finding).
"""

from hypothesis import settings

pytest_plugins = ["tests.support.kafka_fixtures", "tests.support.clickhouse_fixtures", "tests.support.dpo_pipeline"]

settings.register_profile("records", deadline=None)
settings.load_profile("records")

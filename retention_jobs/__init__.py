"""Retention, proven rather than assumed, and the compliance report.

- `enforce`: delete every row past its policy limit now and verify the oldest row of each
  record type (`records retention run`; the sink calls it on a schedule in embedded mode).
- `linger` / `topics_audit`: how long an erased subject's data can still live in each Kafka
  topic, from the topic's configuration, against the policy's bound (`records topics audit`).
- `report` (pure evaluation), `report_collect` (evidence from ClickHouse and Kafka),
  `report_html` / `svg_charts` (a self-contained page): `records report`.

Imports `pipeline` only; the CLI composes these functions with clients it opens itself.
"""

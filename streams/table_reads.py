"""Reading the worker's faust tables without paying for a missing key.

`table.get(key)` on a faust table (faust-streaming 0.15) goes Mapping.get -> __getitem__
-> the store -> `__missing__`, which raises KeyError for Mapping.get to catch: about
10 µs per missing key, and most lookups miss (a subject that was never erased, a visitor
with no consent event yet). Each record looks several subject keys up in two tables, so
that was a tenth of the streams stage's time (py-spy, issue 15). Membership first costs a
dict lookup; the value read is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lookup(table: Mapping[bytes, Any], key: bytes) -> Any | None:
    """The table's value for `key`, None when it has none (what `table.get(key)` returns)."""
    return table[key] if key in table else None  # noqa: SIM401 - get() is what this avoids

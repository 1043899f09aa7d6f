"""How long an erased subject's data can still be read from a Kafka topic, from the topic's
configuration alone. Pure: configs in, worst cases out.

The model (worst case, measured from the moment of the erasure):

- `cleanup.policy=delete`: a record written just before the erasure stays until its whole
  segment is deleted, and a segment is deleted only once its NEWEST record is older than
  `retention.ms`; the active segment rolls after `segment.ms`. So the first record of a
  segment lives `retention.ms + segment.ms`. (`retention.ms=-1`: unbounded.) The broker
  checks retention every `log.retention.check.interval.ms` (5 min by default), which is
  below the model's resolution.
- `cleanup.policy=compact`: the erasure writes a tombstone for the subject's key; the old
  value disappears when the cleaner compacts the segments up to the tombstone. The
  tombstone's segment must be closed first (it rolls after `segment.ms`; Kafka rolls
  compacted segments at min(segment.ms, max.compaction.lag.ms)), and a closed segment is
  compacted at the latest `max.compaction.lag.ms` after its first record (not before
  `min.compaction.lag.ms`). Bound used: max(min, max compaction lag) + segment.ms, a safe
  upper bound. An unbounded `max.compaction.lag.ms` (Kafka's default, Long.MAX) means no
  bound at all. Rolling happens on append, so the bound assumes the topic keeps receiving
  writes, as the pipeline's topics do.
  The tombstone itself holds only the subject key (a pseudonym, no plaintext) and stays
  `delete.retention.ms` longer, so consumers that were offline see it; it is reported,
  not held against the bound.
- `compact,delete`: whichever of the two removes the record first.

Topics flagged `personal_data=False` are reported but never flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
# Kafka's "never" for max.compaction.lag.ms is Long.MAX_VALUE; anything past a century is
# treated as unbounded.
_UNBOUNDED_MS = 100 * 365 * _DAY_MS


@dataclass(frozen=True)
class Linger:
    """Worst-case linger of one topic; None in a field means unbounded."""

    data_ms: int | None  # an erased subject's record (personal data) can still be read
    tombstone_ms: int | None  # compacted topics: until the tombstone (key only) is gone too
    basis: str  # how data_ms was computed, for people: "retention.ms 7 d + segment.ms 1 d"

    def exceeds(self, bound_ms: int) -> bool:
        return self.data_ms is None or self.data_ms > bound_ms


class LingerError(ValueError):
    """A topic configuration value that the model cannot read."""


def _ms(config: Mapping[str, str], key: str) -> int | None:
    """A millisecond setting; None when absent, negative (Kafka's 'infinite') or huge."""
    raw = config.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LingerError(f"{key}={raw!r} is not a number of milliseconds") from None
    return None if value < 0 or value >= _UNBOUNDED_MS else value


def _plus(*parts: int | None) -> int | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def cleanup_policies(config: Mapping[str, str]) -> frozenset[str]:
    return frozenset(p.strip() for p in config.get("cleanup.policy", "delete").split(",") if p.strip())


def topic_linger(config: Mapping[str, str]) -> Linger:
    """The linger model above applied to one topic's configuration (live or specified).

    A setting the model needs but the configuration lacks counts as unbounded: a live
    description from the broker always carries every setting, defaults included."""
    policies = cleanup_policies(config)
    segment = _ms(config, "segment.ms")
    candidates: list[tuple[int | None, str]] = []
    tombstone: int | None = None
    if "delete" in policies:
        retention = _ms(config, "retention.ms")
        candidates.append(
            (_plus(retention, segment), f"retention.ms {format_ms(retention)} + segment.ms {format_ms(segment)}")
        )
    if "compact" in policies:
        max_lag = _ms(config, "max.compaction.lag.ms")
        min_lag = _ms(config, "min.compaction.lag.ms") or 0
        lag = None if max_lag is None else max(max_lag, min_lag)
        compacted = _plus(lag, segment)
        candidates.append((compacted, f"max.compaction.lag.ms {format_ms(lag)} + segment.ms {format_ms(segment)}"))
        tombstone = _plus(compacted, _ms(config, "delete.retention.ms"))
    if not candidates:
        return Linger(None, None, f"cleanup.policy {config.get('cleanup.policy')!r} removes nothing")
    bounded = [c for c in candidates if c[0] is not None]
    data_ms, basis = min(bounded, key=lambda c: c[0] or 0) if bounded else candidates[0]
    return Linger(data_ms, tombstone, basis)


def format_ms(ms: int | None) -> str:
    """A duration for people: '40 s', '30 min', '5 h', '7 d', '7 d 1 h', 'unbounded'."""
    if ms is None:
        return "unbounded"
    if ms < 60_000:
        return f"{ms / 1000:.0f} s"
    if ms < _HOUR_MS:
        return f"{ms / 60_000:.0f} min"
    days, rest = divmod(ms, _DAY_MS)
    hours = round(rest / _HOUR_MS, 1)
    if days == 0:
        return f"{hours:g} h"
    return f"{days} d" if hours == 0 else f"{days} d {hours:g} h"

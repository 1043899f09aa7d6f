"""The consent denials in force, in memory: per subject key and need, the latest
`event_time` of a stored ConsentLedgerRecord that denies that need (sink/consent_withdrawal.py
states the contract). Only subject keys (keyed hashes) and times: no plaintext.

Fed from the stored ledger when it is (re)loaded and from each batch's ledger rows
(`note`), so the sink can tell, without a query, whether a row it is about to insert
carries a denied key (`hits`).

Bound: one entry per subject key with a denial whose `event_time` is within the horizon
(the longest retention of a consent-bound table plus a day, 181 days with today's policy;
an older denial can only cover rows already past their retention, which the TTL drops)
when loaded, plus the keys denied since. An entry is the key (64 bytes), a dict of at
most 4 needs and their times: ~370-410 bytes measured (tracemalloc), so 100k denied
subject keys cost ~40 MB. The horizon is applied when the state is (re)loaded.

Also here: reading a row's subject keys straight from its Avro body (`prefix_subject_keys`)
and the Python form of `pipeline.clickhouse_ddl.LEDGER_DENIES` (`ledger_denies`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.avro_binary import read_long, read_string_array
from pipeline.clickhouse_ddl import LEDGER_DENIES, TableModel
from pipeline.schemas import AvroSchema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# The same conditions as LEDGER_DENIES (SQL), over a decoded ledger record.
_DENIES = {
    "contact_consent": lambda r: r.get("kind") == "CONSENT"
    and r.get("purpose") == "CONTACT_DETAILS"
    and r.get("status") == "WITHDRAWN",
    "cookie.functional": lambda r: r.get("kind") == "COOKIE" and not r.get("cookie_functional"),
    "cookie.analytics": lambda r: r.get("kind") == "COOKIE" and not r.get("cookie_analytics"),
    "geolocation": lambda r: r.get("kind") == "COOKIE" and not r.get("geolocation_permission"),
}
assert set(_DENIES) == set(LEDGER_DENIES), "sink/denial_state.py must mirror LEDGER_DENIES"


def ledger_denies(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The needs a decoded ConsentLedgerRecord denies, sorted (LEDGER_DENIES in Python)."""
    return tuple(need for need in sorted(_DENIES) if _DENIES[need](record))


def to_ms(value: datetime | int) -> int:
    """Milliseconds since the epoch of a fastavro timestamp-millis value."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MS


def has_key_prefix(writer: AvroSchema) -> bool:
    """True when the writer's records start event_id, source_event_id (strings),
    subject_keys (array of strings): `prefix_subject_keys` can read them."""
    fields = writer.definition.get("fields", [])
    if len(fields) < 3:
        return False
    names = [f["name"] for f in fields[:3]]
    types = [f["type"] for f in fields[:3]]
    return (
        names == ["event_id", "source_event_id", "subject_keys"]
        and all(_is_string(t) for t in types[:2])
        and isinstance(types[2], dict)
        and types[2].get("type") == "array"
        and _is_string(types[2].get("items"))
    )


def _is_string(avro_type: object) -> bool:
    return avro_type == "string" or (isinstance(avro_type, dict) and avro_type.get("type") == "string")


def prefix_subject_keys(body: bytes) -> list[bytes]:
    """The subject keys (UTF-8 bytes) of a binary body whose writer `has_key_prefix`.
    Raises ValueError on a truncated body."""
    try:
        return _prefix_subject_keys(body)
    except IndexError:
        raise ValueError("truncated Avro body") from None


def _prefix_subject_keys(body: bytes) -> list[bytes]:
    pos = 0
    for _ in range(2):  # event_id, source_event_id
        length, pos = read_long(body, pos)
        pos += length
    return read_string_array(body, pos)[0]


def time_reader(writer: AvroSchema, name: str) -> Callable[[bytes], int | None] | None:
    """A reader of the long (timestamp-millis) field `name` straight from a binary body,
    skipping the fields before it; None when a field before it (or it) has a type this
    reader does not skip (then decode the record). The reader returns None for a null
    value and raises ValueError on a truncated body."""
    found = _steps_to(writer, name)
    if found is None or found[1] not in ("long", "?long") or not _millis(found[2]):
        return None
    plan, target, _ = found

    def read(body: bytes) -> int | None:
        try:
            pos = _value_at(body, plan, nullable=target == "?long")
            return None if pos is None else read_long(body, pos)[0]
        except IndexError:
            raise ValueError("truncated Avro body") from None

    return read


def string_reader(writer: AvroSchema, name: str) -> Callable[[bytes], str | None] | None:
    """A reader of the string field `name` straight from a binary body, as `time_reader`."""
    found = _steps_to(writer, name)
    if found is None or found[1] not in ("string", "?string") or not _is_text(found[2]):
        return None
    plan, target, _ = found

    def read(body: bytes) -> str | None:
        try:
            pos = _value_at(body, plan, nullable=target == "?string")
            if pos is None:
                return None
            length, pos = read_long(body, pos)
            return body[pos : pos + length].decode("utf-8")
        except (IndexError, UnicodeDecodeError):
            raise ValueError("truncated or invalid Avro body") from None

    return read


def _steps_to(writer: AvroSchema, name: str) -> tuple[tuple[str, ...], str, object] | None:
    """The `_skip` steps over the fields before field `name`, its `_simple` kind and its
    Avro type; None when it is missing or a field before it cannot be skipped."""
    steps: list[str] = []
    for spec in writer.definition.get("fields", []):
        kind = _simple(spec["type"])
        if spec["name"] == name:
            return (tuple(steps), kind, spec["type"]) if kind is not None else None
        if kind is None:
            return None
        steps.append(kind)
    return None


def _value_at(body: bytes, plan: tuple[str, ...], *, nullable: bool) -> int | None:
    """Where the field after the `plan` steps starts its value; None when it is null."""
    pos = 0
    for step in plan:
        pos = _skip(body, pos, step)
    if nullable:
        branch, pos = read_long(body, pos)
        if branch == 0:
            return None
    return pos


def _is_text(avro_type: object) -> bool:
    """A string, or one behind a [null, x] union (not bytes)."""
    if isinstance(avro_type, list):
        return any(_is_text(branch) for branch in avro_type if branch != "null")
    return _is_string(avro_type)


def _millis(avro_type: object) -> bool:
    """A timestamp-millis long, or one behind a [null, x] union."""
    if isinstance(avro_type, list):
        return any(_millis(branch) for branch in avro_type if branch != "null")
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis"


def _simple(avro_type: object) -> str | None:
    """'string' (also bytes), 'long' (also int, enum), 'bool', 'float', 'double',
    'strings' (array of strings) or the same behind '?' for a [null, x] union; else None."""
    if isinstance(avro_type, list):
        if len(avro_type) == 2 and avro_type[0] == "null":
            inner = _simple(avro_type[1])
            return None if inner is None or inner.startswith("?") else "?" + inner
        return None
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "enum":
            return "long"
        if kind == "array":
            return "strings" if _simple(avro_type.get("items")) == "string" else None
        return _simple(kind) if isinstance(kind, str) else None
    return {
        "string": "string", "bytes": "string", "long": "long", "int": "long",
        "boolean": "bool", "float": "float", "double": "double",
    }.get(str(avro_type))


def _skip(body: bytes, pos: int, kind: str) -> int:
    if kind.startswith("?"):
        branch, pos = read_long(body, pos)
        return pos if branch == 0 else _skip(body, pos, kind[1:])
    if kind == "string":
        length, pos = read_long(body, pos)
        return pos + length
    if kind == "long":
        return read_long(body, pos)[1]
    if kind == "bool":
        return pos + 1
    if kind == "float":
        return pos + 4
    if kind == "double":
        return pos + 8
    return read_string_array(body, pos)[1]  # strings


class DenialState:
    """Per subject key (UTF-8 bytes): need -> latest denying `event_time` in ms. Times only grow."""

    def __init__(self, horizon: timedelta) -> None:
        self.horizon = horizon
        self._until: dict[bytes, dict[str, int]] = {}
        self.loaded = False

    def __len__(self) -> int:
        return len(self._until)

    def invalidate(self) -> None:
        """Forget everything: the next `load` rebuilds from the store."""
        self._until = {}
        self.loaded = False

    def load(self, client: Client, ledger: TableModel) -> int:
        """Rebuild from the stored ledger (one query); the number of keys held."""
        needs = sorted(LEDGER_DENIES)
        denied = " OR ".join(f"({LEDGER_DENIES[n]})" for n in needs)
        need_of = ", ".join(f"if({LEDGER_DENIES[n]}, ['{n}'], [])" for n in needs)
        since = to_ms(datetime.now(UTC) - self.horizon)
        rows = client.query(
            f"SELECT key, need, toUnixTimestamp64Milli(max(event_time)) FROM (\n"
            f"  SELECT arrayJoin(subject_keys) AS key, event_time, arrayJoin(arrayConcat({need_of})) AS need\n"
            f"  FROM {ledger.qualified} WHERE ({denied}) AND event_time >= fromUnixTimestamp64Milli({since})\n"
            ") GROUP BY key, need"
        ).result_rows
        self._until = {}
        for key, need, until in rows:
            self._until.setdefault(_as_bytes(key), {})[need] = int(until)
        self.loaded = True
        return len(self._until)

    def note(self, keys: Iterable[bytes], need: str, until_ms: int) -> bool:
        """Record a denial; True unless an earlier denial strictly covers it for every key
        (a later time for each (key, need)): True when it raised a time, and also when it
        equals the time held, as a replay does (the replay of a batch that stopped before
        its denial was applied must apply it)."""
        new = False
        for key in keys:
            needs = self._until.setdefault(key, {})
            held = needs.get(need)
            if held is None or held <= until_ms:
                needs[need] = until_ms
                new = True
        return new

    def hits(self, keys: Sequence[bytes]) -> bool:
        """Whether any of `keys` has a denial (then the row needs a closer look)."""
        return not self._until.keys().isdisjoint(keys)

    def until(self, keys: Iterable[bytes], need: str) -> int | None:
        """The latest denial of `need` over `keys`, or None."""
        best: int | None = None
        for key in keys:
            value = self._until.get(key, {}).get(need)
            if value is not None and (best is None or value > best):
                best = value
        return best


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")

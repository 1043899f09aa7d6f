"""Where the current SubjectRecords of cs.subjects.v1 are, and which of them hold a subject
key: the index that turns a data-subject request's lookup into reading a few messages by
offset instead of the whole topic. Pure: fed message by message (partition, offset, key,
the keys the value holds), no I/O (streams/subject_directory.py tails the topic into it).

It holds keys and positions only, never a record's contents: per Kafka key the position
of its latest message and the subject keys that message holds (its Kafka key, its
`subject_key` and `linked_keys`), and the reverse map subject key -> Kafka keys. The
latest message of a key decides: a later message replaces the earlier one's entry, a
tombstone removes it. So `locate` answers, as of the offsets applied so far, exactly the
records whose latest message holds one of the wanted keys.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where a record's latest message is."""

    partition: int
    offset: int


class SubjectIndex:
    """Kafka key -> position and held keys of its latest message; subject key -> Kafka keys."""

    def __init__(self) -> None:
        self._latest: dict[bytes, tuple[Position, frozenset[bytes]]] = {}
        self._holders: dict[bytes, set[bytes]] = {}
        self._next: dict[int, int] = {}

    def __len__(self) -> int:
        """The number of current (not tombstoned) records."""
        return len(self._latest)

    def apply(self, partition: int, offset: int, key: bytes, held: Iterable[bytes] | None) -> None:
        """The message at (partition, offset) with Kafka key `key`: a record holding the keys
        `held` (its own Kafka key counts as held), or a tombstone (`held` None). A message
        older than the key's indexed one (a re-read) changes nothing."""
        self.advance(partition, offset + 1)
        current = self._latest.get(key)
        if current is not None:
            at = current[0]
            if at.partition == partition and at.offset >= offset:
                return
            self._unlink(key, current[1])
        if held is None:
            self._latest.pop(key, None)
            return
        keys = frozenset((key, *held))
        self._latest[key] = (Position(partition, offset), keys)
        for subject_key in keys:
            self._holders.setdefault(subject_key, set()).add(key)

    def advance(self, partition: int, next_offset: int) -> None:
        """Everything of `partition` before `next_offset` has been applied (also past
        offsets that carry no message: compacted away, transaction markers)."""
        if next_offset > self._next.get(partition, 0):
            self._next[partition] = next_offset

    def caught_up(self, ends: Mapping[int, int]) -> bool:
        """Whether every partition has been applied up to its end offset in `ends`."""
        return all(self._next.get(partition, 0) >= end for partition, end in ends.items())

    def locate(self, wanted: Collection[bytes]) -> dict[bytes, Position]:
        """The records (by Kafka key) whose latest message holds one of `wanted`, and where it is."""
        found: dict[bytes, Position] = {}
        for subject_key in wanted:
            for key in self._holders.get(subject_key, ()):
                found[key] = self._latest[key][0]
        return found

    def _unlink(self, key: bytes, keys: frozenset[bytes]) -> None:
        for subject_key in keys:
            holders = self._holders.get(subject_key)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._holders[subject_key]

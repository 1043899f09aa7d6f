"""The subject index (streams/subject_index.py): which SubjectRecords a lookup reads, as
the compacted topic's latest-message-wins rule says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.subject_index import Position, SubjectIndex


def test_locates_records_by_their_own_and_their_linked_keys() -> None:
    index = SubjectIndex()
    index.apply(0, 0, b"email-a", [b"email-a", b"phone-a"])
    index.apply(1, 0, b"person-b", [b"person-b", b"phone-a"])
    index.apply(2, 0, b"email-c", [b"email-c"])

    assert index.locate([b"phone-a"]) == {b"email-a": Position(0, 0), b"person-b": Position(1, 0)}
    assert index.locate([b"email-a"]) == {b"email-a": Position(0, 0)}
    assert index.locate([b"email-c", b"unknown"]) == {b"email-c": Position(2, 0)}
    assert index.locate([b"unknown"]) == {}


def test_a_tombstone_drops_the_record() -> None:
    index = SubjectIndex()
    index.apply(0, 0, b"email-a", [b"email-a", b"phone-a"])
    index.apply(0, 1, b"email-a", None)

    assert index.locate([b"email-a", b"phone-a"]) == {}
    assert len(index) == 0


def test_a_later_record_without_the_key_drops_the_match() -> None:
    index = SubjectIndex()
    index.apply(0, 3, b"email-a", [b"email-a", b"phone-old"])
    index.apply(0, 7, b"email-a", [b"email-a", b"phone-new"])

    assert index.locate([b"phone-old"]) == {}
    assert index.locate([b"phone-new"]) == {b"email-a": Position(0, 7)}


def test_a_re_read_older_message_changes_nothing() -> None:
    index = SubjectIndex()
    index.apply(0, 7, b"email-a", [b"phone-new"])
    index.apply(0, 3, b"email-a", [b"phone-old"])

    assert index.locate([b"phone-new"]) == {b"email-a": Position(0, 7)}
    assert index.locate([b"phone-old"]) == {}


def test_caught_up_once_every_partition_reached_its_end() -> None:
    index = SubjectIndex()
    index.apply(0, 4, b"a", [])
    assert not index.caught_up({0: 5, 1: 2})
    index.advance(1, 2)  # the end of partition 1 (an end-of-partition event)
    assert index.caught_up({0: 5, 1: 2})
    assert not index.caught_up({0: 6, 1: 2})
    assert index.caught_up({})


messages = st.lists(
    st.tuples(
        st.sampled_from([b"k1", b"k2", b"k3"]),
        st.none() | st.frozensets(st.sampled_from([b"s1", b"s2", b"s3"]), max_size=3),
    ),
    max_size=30,
)


@given(messages)
def test_locate_is_what_the_latest_message_of_each_key_holds(log: list[tuple[bytes, frozenset[bytes] | None]]) -> None:
    """Against the definition: replay the log, keep the latest message per key."""
    index = SubjectIndex()
    latest: dict[bytes, tuple[int, frozenset[bytes] | None]] = {}
    for offset, (key, held) in enumerate(log):
        index.apply(0, offset, key, held)
        latest[key] = (offset, held)
    for wanted in ([b"s1"], [b"s2", b"s3"], [b"k1"], [b"k2", b"s1"]):
        expected = {
            key: Position(0, offset)
            for key, (offset, held) in latest.items()
            if held is not None and set(wanted) & {key, *held}
        }
        assert index.locate(wanted) == expected

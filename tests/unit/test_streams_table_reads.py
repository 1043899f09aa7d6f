"""The worker reads its faust tables without raising KeyError for each missing key
(streams.table_reads; issue 15), and reads the same values as before."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.config import load_settings
from pipeline.dsr_contract import CommandSigner
from pipeline.serde import AvroSerializer, Serde
from pipeline.subject_keys import IdentifierKind, SubjectKeyer
from streams.app import StreamsWorker, _Batch, _now
from streams.consent_state import EMPTY, ConsentChange, apply, to_stored
from streams.table_reads import lookup
from tests.support.raw_events import chat_event

KEYER = SubjectKeyer(bytes(range(32)))


@pytest.fixture
def worker(tmp_path: Path) -> StreamsWorker:
    settings = load_settings(env={"RECORDS_DATA_DIR": str(tmp_path)})
    signer = CommandSigner(Ed25519PrivateKey.generate())
    return StreamsWorker(settings, KEYER, serde=Serde(), registry=CollectorRegistry(), command_signer=signer)


@contextmanager
def _key_errors_raised() -> Iterator[list[str]]:
    """Names of the functions that raised KeyError while the block ran (sys.settrace)."""
    raised: list[str] = []

    def trace(frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if event == "exception" and arg[0] is KeyError:
            raised.append(frame.f_code.co_qualname)
        return trace

    sys.settrace(trace)
    try:
        yield raised
    finally:
        sys.settrace(None)


def test_lookup_reads_what_get_reads(worker: StreamsWorker) -> None:
    table = worker.consent_table
    table.data[b"present"] = "value"  # as if restored from the changelog
    assert lookup(table, b"present") == table.get(b"present") == "value"
    assert lookup(table, b"missing") is table.get(b"missing") is None


def _chat(visitor: str, email: str) -> Any:
    value = AvroSerializer("ChatConversation")(chat_event(visitor_id=visitor, email=email, phone=None))
    return SimpleNamespace(
        topic=topics.CHAT.name, partition=0, offset=1, key=b"conv-1", value=value, headers=[], timestamp=None
    )


def test_a_chat_of_unknown_subjects_raises_no_key_error(worker: StreamsWorker) -> None:
    worker._process(_chat("v-warm", "warm@example.fi"), _Batch(_now()))  # first-call imports and caches
    batch = _Batch(_now())
    with _key_errors_raised() as raised:
        worker._process(_chat("v-new", "new@example.fi"), batch)  # subjects in neither table
    assert topics.CHAT_ENRICHED.name in {out.topic for out in batch.sends}  # processed, not dead-lettered
    assert topics.DLQ.name not in {out.topic for out in batch.sends}
    assert raised == []


def test_consent_and_erasure_entries_are_still_found(worker: StreamsWorker) -> None:
    key = KEYER.key(IdentifierKind.VISITOR_ID, "v-1")
    assert key is not None
    state = apply(EMPTY, ConsentChange(1, {"contact_consent": False}))
    worker.consent_table.data[key.encode()] = to_stored(state)
    worker.erasures.data[key.encode()] = 42
    assert worker.consent_of([key]) == state
    assert worker.erased_at(key) == 42
    assert worker.erased_at("never-erased") is None

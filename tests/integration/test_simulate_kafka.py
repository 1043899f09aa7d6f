"""`records simulate` against the real broker: everything it generates arrives, on the
right topics with the right keys, exactly as the generator makes it in this process
(deterministic for the seed and `--now`), malformed messages included."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from pipeline.avro_json import to_jsonable
from pipeline.config import Settings, load_settings
from pipeline.event_producer import event_key
from pipeline.serde import AvroDeserializer, SerdeError
from pipeline.subject_keys import SubjectKeyer, load_pepper
from pipeline.topics import CALL, CHAT, CONSENT, CONTACT_FORM
from records.simulate import RAW_TOPICS, SimulationConfig, event_line, generate
from records.simulate.model import MALFORMED, MALFORMED_HEADER
from tests.support.cli import cli_env, producer_env, run_records
from tests.support.kafka_offsets import ensure_input_topics, topic_end_offsets
from tests.support.kafka_reads import read_since

NOW = "2026-11-01T12:00:00Z"


def _expected(events: int, seed: int) -> SimulationConfig:
    return SimulationConfig(events=events, seed=seed, now=datetime(2026, 11, 1, 12, tzinfo=UTC))


def test_a_simulation_arrives_complete_keyed_and_as_generated(kafka_settings: Settings, tmp_path: Path) -> None:
    ensure_input_topics(kafka_settings, [CHAT, CALL, CONSENT, CONTACT_FORM])
    seed = random.randrange(2**31)  # fresh ids, so runs on a shared broker never mix
    expected = list(generate(_expected(400, seed)))
    before = {topic: topic_end_offsets(kafka_settings, topic) for topic in RAW_TOPICS}
    out = tmp_path / "events.jsonl"

    result = run_records(
        *("simulate", "--events", "400", "--seed", str(seed), "--now", NOW, "--rate", "5000", "--out", str(out)),
        env=producer_env(kafka_settings, tmp_path),
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "delivered 400 of 400, failed 0" in result.stdout
    assert out.read_text(encoding="utf-8").splitlines() == [
        json.dumps(event_line(e), ensure_ascii=False) for e in expected
    ], "the CLI run generated exactly what this process generates"

    keyer = SubjectKeyer(load_pepper(load_settings({"RECORDS_DATA_DIR": str(tmp_path)}), allow_demo=True))
    want = {e.record["event_id"]: e for e in expected if e.record is not None}
    want_raw = {e.key: e for e in expected if e.raw is not None}
    decode = AvroDeserializer()
    arrived: Counter[str] = Counter()
    for topic in RAW_TOPICS:
        for key, value, headers in read_since(kafka_settings, topic, before[topic]):
            assert value is not None and key is not None
            if key.decode() in want_raw:
                event = want_raw.pop(key.decode())
                assert (event.topic, value) == (topic, event.raw)
                assert headers[MALFORMED_HEADER] == dict(event.headers)[MALFORMED_HEADER], "the header names the kind"
                with_error = True
                try:
                    decode(value)
                    with_error = False
                except SerdeError:
                    pass
                assert with_error, "a malformed message decodes"
                arrived[MALFORMED] += 1
                continue
            try:
                decoded = decode(value)
            except SerdeError:
                continue  # another run's malformed message
            event_id = str(decoded.value.get("event_id"))
            if event_id not in want:
                continue
            event = want.pop(event_id)
            assert event.record is not None and event.schema_name == decoded.schema_name
            assert topic == event.topic
            assert to_jsonable(decoded.value) == to_jsonable(event.record)
            assert key.decode() == event_key(decoded.schema_name, decoded.value, keyer)
            arrived[decoded.schema_name] += 1
    assert want == {} and want_raw == {}, "every generated event arrived once"
    generated = Counter(e.schema_name or MALFORMED for e in expected)
    assert arrived == generated
    assert generated[MALFORMED] > 0 and len(generated) == 7  # six record types and the malformed bytes
    per_topic = Counter(e.topic for e in expected)
    assert f"per topic: {', '.join(f'{t} {per_topic[t]}' for t in RAW_TOPICS)}" in result.stdout


def test_a_dry_run_sends_nothing_and_needs_no_broker(tmp_path: Path) -> None:
    env = cli_env(KAFKA_BOOTSTRAP="127.0.0.1:1", RECORDS_DATA_DIR=str(tmp_path))
    result = run_records("simulate", "--events", "500", "--seed", "4", "--now", NOW, "--dry-run", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(dry run)" in result.stdout and "delivered" not in result.stdout
    assert "500 events in" in result.stdout and "bytes/event" in result.stdout

"""With a schema registry (SCHEMA_REGISTRY_URL), upstream producers write the Confluent
wire format. Every stage must decode it with that registry: the wiring builds one Serde
per process and hands it to the streams stage and the sink alike. Before, only the sink's
decoder had the registry, so the streams stage dead-lettered every raw event.

The `mock://` registry lives inside one process; the wiring registers the schema catalog
in a fixed order, so this test process and both workers agree on the schema ids."""

from __future__ import annotations

import dataclasses
import signal
import time
import uuid
from pathlib import Path

from pipeline import topics
from pipeline.config import Settings
from pipeline.kafka.admin import KafkaAdmin
from records.wiring import Wiring
from tests.support.kafka_offsets import start_group_at_end
from tests.support.processes import CHANGELOGS, STREAMS_INPUTS, SinkProcess, WorkerProcess
from tests.support.streams_traffic import call_detail
from tests.support.worker_secrets import KEYER

ENRICHED = (topics.CHAT_ENRICHED, topics.CALL_ENRICHED, topics.CONSENT_LEDGER, topics.DSR_RECEIPTS)


def test_a_confluent_framed_raw_event_is_enriched_and_stored(
    kafka_bootstrap: str, kafka_settings: Settings, kafka_admin: KafkaAdmin, chdb_path: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    registry = {"SCHEMA_REGISTRY_URL": f"mock://registry-e2e-{tag}"}
    kafka_admin.create_topics(list(topics.ALL_TOPICS))
    app_id, sink_group = f"registry-e2e-{tag}", f"registry-e2e-sink-{tag}"
    start_group_at_end(kafka_bootstrap, app_id, STREAMS_INPUTS)
    start_group_at_end(kafka_bootstrap, sink_group, ENRICHED)
    streams = WorkerProcess(app_id, kafka_bootstrap, tmp_path / "streams", extra_env=registry)
    streams.start()
    sink = SinkProcess(chdb_path, kafka_bootstrap, sink_group, "", tmp_path / "sink.log", extra_env=registry)
    try:
        client = sink.client(sink.owner())
        wiring = Wiring(dataclasses.replace(kafka_settings, schema_registry_url=registry["SCHEMA_REGISTRY_URL"]))
        call_id = f"call-{tag}"
        with wiring.event_producer(KEYER) as producer:
            event = producer.encoder.encode("CallDetailRecord", call_detail(call_id, "040 123 4567"))
            assert event.value[:1] == b"\x00", "with a registry, upstream writes the Confluent format"
            producer.send_encoded(event)
            assert producer.flush().ok

        deadline = time.monotonic() + 90
        rows: list[tuple[str, ...]] = []
        while not rows and time.monotonic() < deadline:
            assert streams.process is not None and streams.process.poll() is None, streams.log()[-3000:]
            rows = client.query(
                "SELECT caller_number FROM records.calls FINAL WHERE call_id = {id:String}", parameters={"id": call_id}
            ).result_rows
            time.sleep(0.5)
        assert rows == [("+358401234567",)], streams.log()[-3000:]
    finally:
        sink.kill(signal.SIGTERM)
        streams.stop()
        kafka_admin.delete_topics([f"{app_id}-{suffix}" for suffix in CHANGELOGS])

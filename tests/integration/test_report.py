"""`records report` end to end on the real engine (embedded chDB) with a deterministic
data set: JSON with a verdict per commitment, and a self-contained HTML page whose charts
a headless Chromium actually draws (when Chromium is installed)."""

from __future__ import annotations

import colorsys
import json
import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.access_roles import Role
from pipeline.access_users import UserStore
from pipeline.clickhouse import connect
from pipeline.clickhouse_ddl import ERASED_KEYS_TABLE, RECORDS_DB, TableModel, statements, table_models
from pipeline.config import Settings, load_settings
from pipeline.kafka.admin import KafkaAdmin, ensure_topics
from pipeline.policy import default_policy
from pipeline.topics import ALL_TOPICS
from retention_jobs.linger import topic_linger
from retention_jobs.report import evaluate
from retention_jobs.report_collect import collect_evidence
from retention_jobs.report_evidence import KafkaEvidence
from retention_jobs.svg_charts import BAD_COLOUR, LIMIT_COLOUR, OK_COLOUR
from sink.recording_bounds import check_recordings
from tests.support.cli import chdb_env, run_records
from tests.support.endpoint import served_store
from tests.support.report_lines import RIGHTS_LINES

CLICKHOUSE_LINES = {
    "categories",
    "legal_bases",
    "consent",
    "stripped",
    "recording_notice",
    "retention.chat_conversation",
    "retention.chat_message",
    "retention.call",
    "retention.call_recording",
    "retention.consent_ledger",
    "retention.dsr_receipt",
    *RIGHTS_LINES,
    "no_anonymous_access",
    "personal_users",
    "access_log",
    "exports_expire",
    "access_control",
    "recipients",
    "processing_location",
    "retention.contact_form",
    "sources",
    "rights.identity_verified",
    "recording_bounds",
}


def _empty(column_type: str) -> Any:
    """The value of a column a test row does not mention (what the engine's default is)."""
    if column_type.startswith("Nullable("):
        return None
    if column_type.startswith("Array("):
        return []
    if column_type.startswith("Map("):
        return {}
    if column_type == "Bool":
        return False
    if column_type.startswith(("Int", "Float")):
        return 0
    if column_type.startswith("DateTime64"):
        return datetime(1970, 1, 1, tzinfo=UTC)
    return ""


def _insert(client: Client, model: TableModel, rows: list[dict[str, Any]]) -> None:
    types = {c.name: c.type for c in model.columns}
    names = sorted({name for row in rows for name in row})
    assert set(names) <= set(types), set(names) - set(types)
    client.insert(
        model.qualified,
        [[row[n] if n in row else _empty(types[n]) for n in names] for row in rows],
        column_names=names,
    )


def _recording(i: int, start: datetime) -> dict[str, Any]:
    return {
        "event_id": f"rec-{i}",
        "recording_id": f"r{i}",
        "call_id": f"c{i}",
        "recording_started_at": start,
        "notice_played_at": start - timedelta(seconds=8),
        "recording_ended_at": start + timedelta(minutes=4),
    }


def _receipt(i: int, done: datetime, *, waited_s: float) -> dict[str, Any]:
    return {
        "request_id": f"00000000-0000-4000-8000-{i:012d}",
        "request_type": "ERASURE" if i < 20 else "ACCESS",
        "status": "COMPLETED",
        "requested_at": done - timedelta(seconds=waited_s),
        "completed_at": done,
    }


def load_data_set(client: Client, now: datetime) -> dict[str, int]:
    """Rows of every record type within their limits, with strips, consents and requests."""
    for statement in statements():
        client.command(statement)
    rnd = random.Random(7)
    models = {m.record.record_type: m for m in table_models()}

    def ago(max_days: float) -> datetime:
        return now - timedelta(days=rnd.uniform(0.01, max_days))

    chats = []
    for i in range(120):
        web = i % 3 != 0
        consent = web and i % 2 == 0
        analytics = i % 4 == 0
        stripped = []
        if web and not consent:
            stripped += ["name:no_contact_consent", "email:no_contact_consent"]
        if not analytics:
            stripped += ["city:no_cookie_analytics"]
        chats.append(
            {
                "event_id": f"chat-{i}",
                "conversation_id": f"conv-{i}",
                "channel": "WEB" if web else "MYSTAFF_APP",
                "started_at": ago(175),
                "subject_keys": [f"key-{i}"],
                "contact_consent": consent,
                "cookie_analytics": analytics,
                "email": f"person{i}@example.invalid" if consent else None,
                "city": "Tampere" if analytics else None,
                "person_number": None if web else f"P{i:05d}",
                "stripped": stripped,
            }
        )
    _insert(client, models["chat_conversation"], chats)
    _insert(
        client,
        models["chat_message"],
        [{"event_id": f"msg-{i}", "message_id": f"m{i}", "sent_at": ago(175), "text": "hei"} for i in range(300)],
    )
    _insert(
        client,
        models["call"],
        [
            {"event_id": f"call-{i}", "call_id": f"c{i}", "started_at": ago(720), "caller_number": "+358401234567"}
            for i in range(200)
        ],
    )
    _insert(client, models["call_recording"], [_recording(i, ago(88)) for i in range(60)])
    _insert(
        client,
        models["consent_ledger"],
        [
            {
                "event_id": f"cl-{i}",
                "kind": "CONSENT",
                "purpose": "CONTACT_DETAILS",
                "status": "GIVEN",
                "event_time": ago(700),
                "subject_keys": [f"key-{i}"],
            }
            for i in range(40)
        ],
    )
    receipts = [_receipt(i, ago(300), waited_s=rnd.expovariate(1 / 1800)) for i in range(25)]
    _insert(client, models["dsr_receipt"], receipts)
    # Subjects erased earlier: none of their rows is left.
    client.insert(
        f"{RECORDS_DB}.{ERASED_KEYS_TABLE}",
        [[f"erased-{i}", now - timedelta(days=i + 1)] for i in range(3)],
        column_names=["subject_key", "erased_at"],
    )
    return {"chat_conversation": len(chats), "call": 200, "call_recording": 60}


ProducedReport = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture(scope="module")
def data_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB directory holding the data set, closed again so the CLI can open it."""
    path = tmp_path_factory.mktemp("report") / "chdb"
    settings = load_settings(env={"RECORDS_DATA_DIR": str(path.parent / "data"), "RECORDS_CHDB_PATH": str(path)})
    with connect(settings) as client:
        load_data_set(client, datetime.now(UTC))
        check_recordings(client)  # what the sink's job does (notice §5)
        analyst_queries_once(settings, client)
    return path


def analyst_queries_once(settings: Settings, client: Client) -> None:
    """What `make demo` does for notice §13: a DPO adds an analyst, who runs one query
    through the endpoint the sink serves (so the access log has evidence)."""
    UserStore(settings.users_file).add("alice", Role.analyst, "alice-pass-1", datetime.now(UTC).isoformat())
    with served_store(settings, as_owner=False) as served:
        client_of_alice = clickhouse_connect.get_client(port=served.port, username="alice", password="alice-pass-1")
        assert client_of_alice.query("SELECT count() FROM analyst.calls").result_rows == [(200,)]


@pytest.fixture(scope="module")
def produced_report(data_set: Path, kafka_bootstrap: str, kafka_admin: KafkaAdmin) -> ProducedReport:
    """`records report --json --html FILE` over the data set and the pipeline's topics."""
    ensure_topics(kafka_admin, ALL_TOPICS)
    page = data_set.parent / "reports" / "compliance.html"
    done = run_records(
        *("report", "--json", "--html", str(page)),
        env=chdb_env(data_set, KAFKA_BOOTSTRAP=kafka_bootstrap),
        cwd=data_set.parent,
        timeout=180,
    )
    return done, page


def _linger_beyond_bound_by_specification() -> bool:
    bound_ms = int(default_policy().erasure_max_linger.total_seconds() * 1000)
    return any(t.personal_data and topic_linger(t.config).exceeds(bound_ms) for t in ALL_TOPICS)


def test_json_has_a_verdict_per_commitment_and_live_figures(produced_report: ProducedReport) -> None:
    done, _ = produced_report
    report = json.loads(done.stdout)
    lines = {line["id"]: line for line in report["lines"]}

    assert set(lines) == CLICKHOUSE_LINES | {"kafka_config", "kafka_linger"}
    assert all(line["status"] in ("pass", "fail") for line in lines.values())
    assert [i for i in CLICKHOUSE_LINES if lines[i]["status"] != "pass"] == []
    assert lines["kafka_config"]["status"] == "pass"
    assert lines["kafka_config"]["evidence"] == f"{len(ALL_TOPICS)} topics match their specification"
    # The linger verdict follows from pipeline/topics.py, whatever it says today.
    assert lines["kafka_linger"]["passed"] is not _linger_beyond_bound_by_specification()
    assert len(lines["kafka_linger"]["details"]) == len(ALL_TOPICS)
    assert done.returncode == (0 if report["passed"] else 1), done.stderr
    assert "Traceback" not in done.stderr

    assert lines["consent"]["evidence"].startswith("0 rows hold a consent-based field")
    # 80 web chats, half without contact consent -> 40 x (name, email); 90 without analytics cookies
    assert "no_cookie_analytics 90, no_contact_consent 80" in lines["stripped"]["evidence"]
    assert "20 request(s): COMPLETED 20" in lines["rights.erasure"]["evidence"]
    assert "3 erased subject key(s); 0 rows" in lines["erasure_proof"]["evidence"]
    ages = report["record_ages"]
    assert ages["chat_conversation"]["rows"] == 120 and ages["chat_conversation"]["expired_rows"] == 0
    assert sum(ages["call"]["histogram"]) == 200
    assert ages["call_recording"]["oldest_age_days"] < 90
    assert sum(report["erasure_latency"]["counts"]) == 20
    assert {t["name"] for t in report["kafka"]["topics"]} == {t.name for t in ALL_TOPICS}


def test_unreachable_kafka_makes_the_kafka_lines_unknown(data_set: Path) -> None:
    done = run_records(
        "report", "--json", env=chdb_env(data_set, KAFKA_BOOTSTRAP="127.0.0.1:1"), cwd=data_set.parent, timeout=180
    )
    lines = {line["id"]: line for line in json.loads(done.stdout)["lines"]}

    assert sorted(i for i, line in lines.items() if not line["passed"]) == ["kafka_config", "kafka_linger"]
    assert lines["kafka_linger"]["evidence"].startswith("unknown: Kafka at 127.0.0.1:1 did not answer: ")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: 2 of {len(lines)} commitments fail: kafka_config, kafka_linger"
    ]


def test_html_is_self_contained_with_a_chart_per_record_type(produced_report: ProducedReport) -> None:
    _, page = produced_report
    html = page.read_text(encoding="utf-8")

    for record_type in default_policy().records:
        assert html.count(f'class="chart age-chart age-{record_type}"') == 1
    assert html.count('class="chart latency-chart"') == 1
    assert html.count('class="chart linger-chart"') == 1
    lowered = html.lower()
    for needle in ("http://", "https://", "src=", "href=", "<script", "<link", "@import", "url(", "<iframe"):
        assert needle not in lowered, needle


def test_collected_evidence_catches_each_kind_of_breach(ch_client: Client) -> None:
    """The evidence queries against the real engine: one planted breach per commitment."""
    for statement in statements():
        ch_client.command(statement)
    now = datetime.now(UTC)
    day = timedelta(days=1)
    models = {m.record.record_type: m for m in table_models()}
    _insert(
        ch_client,
        models["chat_conversation"],
        [
            # contact details stored without the separate consent (web chat): breach
            {"event_id": "no-consent", "channel": "WEB", "started_at": now - 3 * day, "email": "a@example.invalid"},
            # the same in an app chat: the consent rule applies to web chats only, no breach
            {"event_id": "app", "channel": "MYSTAFF_APP", "started_at": now - 3 * day, "email": "b@example.invalid"},
            # consent given, then withdrawn later, and the field is still there: breach
            {
                "event_id": "withdrawn",
                "channel": "WEB",
                "started_at": now - 5 * day,
                "contact_consent": True,
                "name": "N",
                "subject_keys": ["key-w"],
            },
            # precise location without the geolocation permission: breach
            {"event_id": "geo", "channel": "WEB", "started_at": now - day, "latitude": 61.5, "longitude": 23.8},
            # a row of an erased subject from before the erasure: breach of the erasure proof
            # (ingested before it, whatever its own date says: here one dated after it)
            {
                "event_id": "erased",
                "channel": "WEB",
                "started_at": now - day,
                "ingested_at": now - 9 * day,
                "subject_keys": ["key-e"],
            },
            # the same subject back after the erasure: a new contact (ingested after it), lawful
            {
                "event_id": "back",
                "channel": "WEB",
                "started_at": now - day,
                "ingested_at": now - day,
                "subject_keys": ["key-e"],
            },
        ],
    )
    _insert(
        ch_client,
        models["consent_ledger"],
        [
            {
                "event_id": "w",
                "kind": "CONSENT",
                "purpose": "CONTACT_DETAILS",
                "status": "WITHDRAWN",
                "event_time": now - 4 * day,
                "subject_keys": ["key-w"],
            }
        ],
    )
    _insert(
        ch_client,
        models["call_recording"],
        [
            {
                "event_id": "late-notice",
                "recording_started_at": now - day,
                "notice_played_at": now - day + timedelta(seconds=5),
            }
        ],
    )
    ch_client.insert(
        f"{RECORDS_DB}.{ERASED_KEYS_TABLE}",
        [["key-e", now - 2 * day]],
        column_names=["subject_key", "erased_at"],
    )
    policy = default_policy()

    evidence = collect_evidence(ch_client, policy, now, storage="test", kafka=KafkaEvidence(error="not asked"))
    report = evaluate(policy, evidence)

    breaches = {(b.field, b.withdrawn): b.rows for b in evidence.consent_breaches if b.rows}
    assert breaches == {("email", False): 1, ("latitude", False): 1, ("longitude", False): 1, ("name", True): 1}
    assert evidence.recordings_without_prior_notice == 1
    assert evidence.rows_surviving_erasure["chat_conversation"] == 1
    assert evidence.recording_bounds is not None and evidence.recording_bounds.overdue == 1  # never checked
    failed = sorted(line.id for line in report.lines if not line.passed)
    assert failed == [
        "consent",
        "erasure_proof",
        "kafka_config",
        "kafka_linger",
        "recording_bounds",
        "recording_notice",
    ]


# ---- the page in a real browser ---------------------------------------------------------


def _screenshot(page: Path, out: Path, profile: Path) -> None:
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--force-device-scale-factor=0.5",  # half the pixels to decode; bars stay solid
            f"--screenshot={out}",
            "--window-size=1200,4000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


def _pixels(png: bytes) -> Iterator[tuple[int, int, int]]:
    """The RGB pixels of an 8-bit RGB/RGBA PNG (what Chromium writes), decoded by hand."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = colour = 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = {2: 3, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    for y in range(height):
        kind_of_filter = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind_of_filter == 1:
                line[i] = (line[i] + a) & 255
            elif kind_of_filter == 2:
                line[i] = (line[i] + b) & 255
            elif kind_of_filter == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind_of_filter == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            yield line[x], line[x + 1], line[x + 2]
        prev = line


def _hue_count(pixels: list[tuple[int, int, int]], colour: str) -> int:
    """Pixels of the same hue as `colour` (+-8 degrees), however light: anti-aliasing blends
    a thin line or a glyph with the white page, which keeps its hue; greys are ignored."""
    target = colorsys.rgb_to_hsv(*(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0] * 360
    count = 0
    for r, g, b in pixels:
        if max(r, g, b) - min(r, g, b) < 40:
            continue
        hue = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0] * 360
        if min(abs(hue - target), 360 - abs(hue - target)) <= 8:
            count += 1
    return count


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_draws_the_charts(
    produced_report: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    _, page = produced_report
    # The same page with its charts hidden: the chart colours left there come from the legend.
    without_charts = tmp_path / "without-charts.html"
    without_charts.write_text(page.read_text(encoding="utf-8").replace("<svg ", '<svg style="display:none" '))
    shots = {}
    for name, source in (("with", page), ("without", without_charts)):
        out = tmp_path / f"{name}.png"
        _screenshot(source, out, tmp_path / f"profile-{name}")
        shots[name] = list(_pixels(out.read_bytes()))

    def drawn_by_charts(colour: str) -> int:
        return _hue_count(shots["with"], colour) - _hue_count(shots["without"], colour)

    assert drawn_by_charts(OK_COLOUR) > 10_000  # bars of the six age histograms and the latency one
    assert drawn_by_charts(LIMIT_COLOUR) > 500  # dashed limit lines and their labels
    # Red: no record past its limit in this data set; a topic bar only if its specification
    # lets erased data linger past the bound.
    if _linger_beyond_bound_by_specification():
        assert drawn_by_charts(BAD_COLOUR) > 200
    else:
        assert drawn_by_charts(BAD_COLOUR) < 50

"""The Quix Streams peer: the streams stage's work (bench/transform.py: decode, the
project's enrichment and enforcement, encode) written with Quix Streams, the Python
stream library users pick instead of faust, run in the same benchmark as the stage.

quixstreams pins confluent-kafka below the version the pipeline runs on, so the peer
lives in a virtualenv of its own, `.venv-quix` at the repository root: quixstreams from
PyPI plus the pure core's own dependencies at this environment's versions; the project
itself comes in through PYTHONPATH (its code, not its dependencies). The virtualenv is
made on first use and kept; it is remade when the requirements change.

Two halves:
- in the benchmark's process: `ensure_quix_venv()` and `run_quix_peer(...)`, which runs
  this module in that virtualenv and returns events/s;
- in the virtualenv (`python -m bench.quix_peer`): one Quix `Application` with a
  `StreamingDataFrame` per raw topic, `apply(expand=True)` -> `to_topic`; at-least-once,
  the producer configured as the plain loop's (lz4, idempotent, acks=all). Timed from the
  first message processed until `Application.run` returned, which flushes the producer
  and commits after the last message.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.exceptions import RecordsError

QUIXSTREAMS = "quixstreams==3.28.1"
# What bench/transform.py imports beyond the standard library, at this environment's versions.
_CORE_PACKAGES = ("fastavro", "phonenumbers", "ua-parser[regex]", "publicsuffixlist")
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-quix"
_STAMP = ".bench-requirements"
INSTALL_TIMEOUT_S = 900.0


def requirements() -> list[str]:
    """quixstreams and the pure core's dependencies, pinned to the versions installed here."""
    out = [QUIXSTREAMS]
    for requirement in _CORE_PACKAGES:
        name = requirement.split("[", 1)[0]
        out.append(f"{requirement}=={metadata.version(name)}")
    return out


def ensure_quix_venv(venv: Path = VENV) -> Path:
    """The peer's Python interpreter, making the virtualenv if it is missing or stale.
    Raises RecordsError with pip's last line when it cannot be made."""
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements()) + "\n"
    stamp = venv / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted.split()],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RecordsError(f"the Quix Streams peer's virtualenv: `{' '.join(step[:4])}` timed out") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise RecordsError(f"the Quix Streams peer's virtualenv could not be made: {lines[-1]}")
    stamp.write_text(wanted)
    return python


def run_quix_peer(
    python: Path,
    env: dict[str, str],
    out_topic: str,
    total: int,
    state_dir: Path,
    timeout: float,
    sources: Sequence[str] = (),
) -> float:
    """Run the peer on the first `total` messages of `sources` (default: the raw topics;
    a new group, from the start), writing to `out_topic`; events/s. `env` carries the
    settings (bootstrap, pepper)."""
    command = [str(python), "-m", "bench.quix_peer", "--out", out_topic, "--total", str(total)]
    command += ["--state-dir", str(state_dir), *(f"--source={name}" for name in sources)]
    try:
        done = subprocess.run(
            command, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RecordsError(f"the Quix Streams peer did not finish {total} events in {timeout:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RecordsError(f"the Quix Streams peer failed (exit {done.returncode}): {tail}")
    return float(json.loads(lines[-1])["events_per_s"])


def _peer(out_topic: str, total: int, state_dir: str, sources: Sequence[str]) -> float:  # pragma: no cover
    from datetime import UTC, datetime

    from quixstreams import Application
    from quixstreams.models.serializers import Serializer

    from bench.transform import Output, RawTransform
    from pipeline import topics
    from pipeline.config import load_settings
    from pipeline.subject_keys import SubjectKeyer, load_pepper

    class _OutputValue(Serializer):
        """The value of an (key, value, headers) output."""

        def __call__(self, value: Output, ctx: Any) -> Any:
            return value[1]

    settings = load_settings()
    transform = RawTransform(SubjectKeyer(load_pepper(settings)), enrich=True)
    app = Application(
        broker_address=settings.kafka.bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        producer_extra_config={
            "linger.ms": 20,
            "batch.size": 1000000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "acks": "all",
            "queue.buffering.max.messages": 500000,
        },
        state_dir=state_dir,
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    out = app.topic(out_topic, key_serializer="bytes", value_serializer=_OutputValue())
    progress = {"done": 0, "started": 0.0}

    def process(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> list[Output]:
        if not progress["started"]:
            progress["started"] = time.perf_counter()
        progress["done"] += 1
        if progress["done"] >= total:
            app.stop()  # run() returns once this message's outputs are produced and committed
        return transform(key, value, datetime.now(UTC))

    for name in sources or (topics.CHAT.name, topics.CALL.name, topics.CONSENT.name, topics.CONTACT_FORM.name):
        source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        sdf = app.dataframe(source).apply(process, expand=True, metadata=True)
        sdf = sdf.set_headers(lambda value, key, timestamp, headers: value[2] or [])
        sdf.to_topic(out, key=lambda value: value[0])
    app.run()
    if progress["done"] < total:
        raise RecordsError(f"the Quix Streams peer stopped after {progress['done']} of {total} events")
    return progress["done"] / (time.perf_counter() - progress["started"])


def main() -> None:  # pragma: no cover - runs in .venv-quix
    parser = argparse.ArgumentParser(description="The Quix Streams peer of `records bench`.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--source", action="append", default=[], help="an input topic (default: the raw topics)")
    args = parser.parse_args()
    print(json.dumps({"events_per_s": _peer(args.out, args.total, args.state_dir, args.source)}))


if __name__ == "__main__":
    main()

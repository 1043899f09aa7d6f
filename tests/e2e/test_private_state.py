"""Local state is private (issue 11, finding 6): after `records up` and `records worker
sink` have run on a data directory, nothing under it (Kafka segments, checkpoints and logs,
chDB parts, the pepper) is readable or writable by group or others, whatever the umask of
the shell that started them. Real broker (its own, on free ports), real chDB."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from pipeline.chdb_owner import read_owner
from records.local_kafka import free_port
from tests.support.ports import free_port_pair
from tests.support.worker_secrets import trusted_keys_env

REPO = Path(__file__).resolve().parents[2]
RECORDS = [sys.executable, "-c", "from records.cli import main; main()"]


def _not_private(root: Path) -> list[str]:
    found = []
    for directory, dirs, files in os.walk(root):
        for path in (directory, *(os.path.join(directory, n) for n in (*dirs, *files))):
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{oct(stat.S_IMODE(mode))} {os.path.relpath(path, root)}")
    return found


def test_broker_and_sink_state_is_private(tmp_path: Path) -> None:
    data = tmp_path / ".data"
    port = free_port_pair()
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "RECORDS_CHDB_PATH")}
    env.update(
        RECORDS_DATA_DIR=str(data),
        RECORDS_CACHE_DIR=str(REPO / ".cache"),
        KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
        RECORDS_SINK_METRICS_PORT=str(metrics_port),
        **trusted_keys_env(tmp_path / "keys"),  # the sink starts only with the keys it verifies DSRs with
    )
    old_umask = os.umask(0o022)  # what a login shell usually has
    try:
        up = subprocess.run([*RECORDS, "up", "--port", str(port)], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            ensure = subprocess.run(
                [*RECORDS, "topics", "ensure"], env=env, capture_output=True, text=True, timeout=120
            )
            assert ensure.returncode == 0, ensure.stdout + ensure.stderr
            log = tmp_path / "sink.log"
            with log.open("wb") as out:
                sink = subprocess.Popen(
                    [*RECORDS, "worker", "sink", "--http-port", "0", "--retention-every", "0"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                deadline = time.monotonic() + 90
                while read_owner(data / "chdb") is None:
                    assert sink.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.2)
            finally:
                sink.send_signal(signal.SIGTERM)
                sink.wait(60)
        finally:
            subprocess.run([*RECORDS, "down"], env=env, capture_output=True, timeout=120)
    finally:
        os.umask(old_umask)

    # Not vacuous: the broker wrote segments and logs, the sink chDB parts.
    assert list((data / "kafka").rglob("*.log")), "no Kafka segments or logs"
    assert list((data / "chdb").rglob("*.bin")) or list((data / "chdb").rglob("*.sql")), "no chDB files"
    assert _not_private(data) == []

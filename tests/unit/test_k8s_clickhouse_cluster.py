"""CLICKHOUSE_CLUSTER reaches every Kubernetes workload that writes to ClickHouse from one
place (the ConfigMap), so the sink's DSR mutations and the retention job cannot disagree
on whether the tables are sharded (a single-node statement on a cluster is refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.config import load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
CONFIG_MAP = "cs-records-config"


def _docs() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "CronJob":
        return list(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"])
    if doc["kind"] in ("Deployment", "Job"):
        return list(doc["spec"]["template"]["spec"]["containers"])
    return []


def test_the_config_map_carries_the_cluster_setting_empty_for_one_server() -> None:
    config = next(d for d in _docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == CONFIG_MAP)
    assert "CLICKHOUSE_CLUSTER" in config["data"]
    assert load_settings(env=config["data"]).clickhouse_cluster is None
    named = {**config["data"], "CLICKHOUSE_CLUSTER": "records_cluster"}
    assert load_settings(env=named).clickhouse_cluster == "records_cluster"


def test_the_sink_and_the_retention_job_read_the_config_map() -> None:
    writers = [
        c
        for d in _docs()
        for c in _containers(d)
        if c.get("command", [])[1:3] in (["retention", "run"], ["worker", "sink"])
    ]
    assert len(writers) >= 2, [c.get("command") for d in _docs() for c in _containers(d)]
    for container in writers:
        sources = [s.get("configMapRef", {}).get("name") for s in container.get("envFrom", [])]
        assert CONFIG_MAP in sources, container["name"]
        assert not any(e["name"] == "CLICKHOUSE_CLUSTER" for e in container.get("env", [])), container["name"]

"""The keys each Kubernetes worker loads at start-up (records/wiring.py) are set and mounted:
the streams pods sign their commands to the sink, the sink checks them and the DPO's
requests; the command signing key is mounted in the streams pods only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _docs() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _deployment(name: str) -> dict[str, Any]:
    return next(d for d in _docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    config = next(d for d in _docs() if d["kind"] == "ConfigMap")["data"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    own = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return {**config, **own}


def _mounted_secrets(deployment: dict[str, Any]) -> dict[str, str]:
    """mount path -> secret name."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = spec["containers"][0]["volumeMounts"]
    return {m["mountPath"]: volumes[m["name"]] for m in mounts if m["name"] in volumes}


def _secret_of(path: str, mounts: dict[str, str]) -> str | None:
    return next((secret for mount, secret in mounts.items() if path.startswith(mount + "/")), None)


def test_each_worker_has_its_keys_mounted() -> None:
    needs = {
        "cs-records-streams": ("RECORDS_PEPPER_FILE", "RECORDS_DPO_PUBLIC_KEYS", "RECORDS_COMMAND_KEY"),
        "cs-records-sink": ("RECORDS_DPO_PUBLIC_KEYS", "RECORDS_COMMAND_PUBLIC_KEYS"),
    }
    for name, variables in needs.items():
        deployment = _deployment(name)
        env, mounts = _env(deployment), _mounted_secrets(deployment)
        for variable in variables:
            assert variable in env, (name, variable)
            assert _secret_of(env[variable], mounts) is not None, (name, variable, env[variable])


def test_the_command_signing_key_is_mounted_in_the_streams_pods_only() -> None:
    streams = _mounted_secrets(_deployment("cs-records-streams"))
    key_secret = _secret_of(_env(_deployment("cs-records-streams"))["RECORDS_COMMAND_KEY"], streams)
    assert key_secret == "cs-records-command-key"
    for doc in _docs():
        if doc["kind"] in ("Deployment", "Job", "CronJob") and doc["metadata"]["name"] != "cs-records-streams":
            assert "cs-records-command-key" not in yaml.safe_dump(doc), doc["metadata"]["name"]

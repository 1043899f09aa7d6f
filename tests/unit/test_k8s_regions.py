"""Notice §7: the Kubernetes manifests pin every workload to the EU/EEA regions the
policy declares (node affinity on topology.kubernetes.io/region)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.policy import default_policy

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
POLICY = default_policy()
REGION_KEY = "topology.kubernetes.io/region"


def _workloads() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment, Job and CronJob under deploy/k8s."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kind = doc.get("kind")
            if kind in ("Deployment", "Job"):
                found.append((f"{path.name}:{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
            elif kind == "CronJob":
                pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                found.append((f"{path.name}:{doc['metadata']['name']}", pod))
    return found


def _pinned_regions(pod: dict[str, Any]) -> set[str] | None:
    required = pod.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return None
    regions: set[str] = set()
    for term in required["nodeSelectorTerms"]:
        expressions = [e for e in term.get("matchExpressions", []) if e["key"] == REGION_KEY]
        if len(expressions) != 1 or expressions[0]["operator"] != "In":
            return None  # a term without the region pin would let the pod anywhere
        regions |= set(expressions[0]["values"])
    return regions


def test_every_workload_is_pinned_to_the_policys_eu_regions() -> None:
    workloads = _workloads()
    assert len(workloads) >= 4, [name for name, _ in workloads]
    allowed = set(POLICY.processing.kubernetes_regions)
    pins = {name: _pinned_regions(pod) for name, pod in workloads}
    assert {name: regions for name, regions in pins.items() if regions != allowed} == {}


def test_the_manifest_check_sees_a_missing_pin() -> None:
    assert _pinned_regions({"containers": []}) is None
    unpinned = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                    ]
                }
            }
        }
    }
    assert _pinned_regions(unpinned) is None

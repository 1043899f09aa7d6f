"""`records deploy ...`: production manifests generated from the code.

- `kafka-manifests`: Strimzi KafkaTopic resources (pipeline/topics.py) and one KafkaUser
  per component with its ACLs (pipeline/topic_access.py), written to a folder
  (deploy/k8s/kafka/ in the repository, where they are committed and drift-tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.topic_access import PRINCIPALS
from pipeline.topics import ALL_TOPICS
from records.kafka_manifests import KafkaTarget, manifests

deploy_app = typer.Typer(help="Generate production manifests from the code.", no_args_is_help=True)


@deploy_app.command("kafka-manifests")
def kafka_manifests(
    out: Annotated[Path, typer.Option("--out", help="Folder to write topics.yaml, users.yaml, kustomization.yaml.")],
    cluster: Annotated[str, typer.Option("--cluster", help="Name of the Strimzi Kafka resource.")] = "records-kafka",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Replicas of every topic.")] = 3,
) -> None:
    """Write Strimzi KafkaTopics and per-component KafkaUsers (ACLs) for the pipeline."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in manifests(KafkaTarget(cluster=cluster, replicas=replicas)).items():
        (out / name).write_text(text, encoding="utf-8")
    typer.echo(
        f"wrote {len(ALL_TOPICS)} KafkaTopics and {len(PRINCIPALS)} KafkaUsers "
        f"({', '.join(p.name for p in PRINCIPALS)}) for cluster {cluster} to {out}"
    )
    typer.echo(f"apply in the Kafka cluster's namespace: kubectl apply -k {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")

"""Settings for every component. This is the only module that reads the environment.

| variable | default | meaning |
| --- | --- | --- |
| KAFKA_BOOTSTRAP | 127.0.0.1:9092 | bootstrap servers of the cluster |
| KAFKA_SECURITY_PROTOCOL | (unset = PLAINTEXT) | PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL |
| KAFKA_SASL_MECHANISM | (unset) | PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 |
| KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD | (unset) | SASL credentials |
| KAFKA_SSL_CA_LOCATION | (unset) | CA bundle for TLS |
| KAFKA_CONFIG_<NAME> | | any other librdkafka setting, e.g. KAFKA_CONFIG_SSL_CERTIFICATE_LOCATION |
| CLICKHOUSE_URL | (unset = embedded chDB) | http(s)://user:pass@host:8123/db of a ClickHouse server |
| CLICKHOUSE_CLUSTER | (unset = one server) | cluster name: `clickhouse init` creates replicated, sharded tables |
| RECORDS_DATA_DIR | ./.data | local state: broker data and logs, chDB data, demo secrets |
| RECORDS_CACHE_DIR | ./.cache | downloaded Kafka jars |
| RECORDS_CHDB_PATH | $RECORDS_DATA_DIR/chdb | embedded ClickHouse data directory |
| RECORDS_PEPPER_FILE | (unset) | file holding the secret pepper of subject keys (>= 32 bytes) |
| RECORDS_PEPPER | (unset) | the pepper itself (hex); prefer the file |
| RECORDS_STREAMS_METRICS_PORT | 9464 | Prometheus port of `records worker streams` (0: off) |
| RECORDS_SINK_METRICS_PORT | 9465 | Prometheus port of `records worker sink` (0: off) |
| RECORDS_GEOIP_CITY_DB | (unset) | MaxMind-format city database (.mmdb) for coarse city; unset: no city |
| RECORDS_DPO_PUBLIC_KEYS | $RECORDS_DATA_DIR/secrets/dpo_ed25519.pub.pem | trusted DPO public keys (PEM, comma list) |
| RECORDS_DPO_PRIVATE_KEY | $RECORDS_DATA_DIR/secrets/dpo_ed25519.pem | the DPO's signing key (`records dsr ...`) |
| RECORDS_DPO_KEY_PASSPHRASE | (unset) | passphrase of an encrypted DPO signing key |
| RECORDS_SQL_USER / RECORDS_SQL_PASSWORD | (unset: owner credential) | a personal user of the embedded query endpoint |
| RECORDS_COMMAND_KEY | $RECORDS_DATA_DIR/secrets/command_ed25519.pem | streams stage's key signing sink commands |
| RECORDS_COMMAND_PUBLIC_KEYS | $RECORDS_DATA_DIR/secrets/command_ed25519.pub.pem | command keys the sink trusts (PEM) |
| RECORDS_COMMAND_MAX_AGE_HOURS | 72 | the sink refuses a command verified longer ago than this |
| SCHEMA_REGISTRY_URL | (unset) | write the Confluent wire format with this registry instead of single-object encoding |
| RECORDS_FAULT_ERASURE_PAUSE_S | (unset: off) | fault tests only: the sink pauses in an erasure (erasure_progress.py) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.exceptions import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach a Kafka cluster; security settings pass through to every client."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def as_librdkafka_dict(self) -> dict[str, str]:
        """Settings for confluent-kafka clients (librdkafka names)."""
        conf: dict[str, str] = {"bootstrap.servers": self.bootstrap}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.extra)
        return conf

    def with_bootstrap(self, bootstrap: str) -> KafkaConnection:
        return KafkaConnection(
            bootstrap=bootstrap,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_ca_location=self.ssl_ca_location,
            extra=self.extra,
        )


@dataclass(frozen=True)
class Settings:
    kafka: KafkaConnection
    clickhouse_url: Secret | None
    data_dir: Path
    cache_dir: Path
    chdb_path: Path
    pepper: Secret | None = None
    pepper_file: Path | None = None
    schema_registry_url: str | None = None
    streams_metrics_port: int = 9464
    sink_metrics_port: int = 9465
    geoip_city_db: Path | None = None
    dpo_public_keys: tuple[Path, ...] = ()
    dpo_private_key: Path | None = None
    dpo_key_passphrase: Secret | None = None
    sql_user: str | None = None
    sql_password: Secret | None = None
    clickhouse_cluster: str | None = None

    @property
    def users_file(self) -> Path:
        """Personal users of the embedded query endpoint (0600, pipeline/access_users.py)."""
        return self.data_dir / "access" / "users.json"

    @property
    def access_log_file(self) -> Path:
        """Who queried the embedded endpoint (JSON lines, 0600, pipeline/access_log.py)."""
        return self.data_dir / "audit" / "access.jsonl"
    command_private_key: Path | None = None
    command_public_keys: tuple[Path, ...] = ()
    command_max_age: timedelta = timedelta(hours=72)
    # Fault tests only (tests/faults/test_kill_sink_erasure.py): a pause after each table's
    # erasure mutation, so a test can kill the sink between two tables. 0 in production.
    fault_erasure_pause_s: int = 0

    @property
    def demo_pepper_file(self) -> Path:
        """Where the local demo keeps the pepper it generates (mode 0600)."""
        return self.data_dir / "secrets" / "pepper"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url is None

    @property
    def kafka_dir(self) -> Path:
        """Local broker state: data, logs, pid file."""
        return self.data_dir / "kafka"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.cache_dir / "kafka-libs"


def _kafka_from_env(env: Mapping[str, str]) -> KafkaConnection:
    prefix = "KAFKA_CONFIG_"
    extra = {
        key[len(prefix) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(prefix) and value
    }
    password = env.get("KAFKA_SASL_PASSWORD")
    return KafkaConnection(
        bootstrap=env.get("KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP,
        security_protocol=env.get("KAFKA_SECURITY_PROTOCOL") or None,
        sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
        sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
        sasl_password=Secret(password) if password else None,
        ssl_ca_location=env.get("KAFKA_SSL_CA_LOCATION") or None,
        extra=extra,
    )


def _clickhouse_url_from_env(env: Mapping[str, str]) -> Secret | None:
    url = env.get("CLICKHOUSE_URL")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("CLICKHOUSE_URL must look like http(s)://user:password@host:8123/database")
    return Secret(url)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment (or from `env`, for tests)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("RECORDS_DATA_DIR") or ".data").resolve()
    cache_dir = Path(env.get("RECORDS_CACHE_DIR") or ".cache").resolve()
    chdb_path = Path(env.get("RECORDS_CHDB_PATH") or data_dir / "chdb").resolve()
    secrets_dir = data_dir / "secrets"
    return Settings(
        kafka=_kafka_from_env(env),
        clickhouse_url=_clickhouse_url_from_env(env),
        data_dir=data_dir,
        cache_dir=cache_dir,
        chdb_path=chdb_path,
        pepper=Secret(env["RECORDS_PEPPER"]) if env.get("RECORDS_PEPPER") else None,
        pepper_file=Path(env["RECORDS_PEPPER_FILE"]).resolve() if env.get("RECORDS_PEPPER_FILE") else None,
        schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
        streams_metrics_port=_port(env, "RECORDS_STREAMS_METRICS_PORT", 9464),
        sink_metrics_port=_port(env, "RECORDS_SINK_METRICS_PORT", 9465),
        geoip_city_db=Path(env["RECORDS_GEOIP_CITY_DB"]).resolve() if env.get("RECORDS_GEOIP_CITY_DB") else None,
        dpo_public_keys=tuple(
            Path(p.strip()).resolve()
            for p in (env.get("RECORDS_DPO_PUBLIC_KEYS") or str(secrets_dir / "dpo_ed25519.pub.pem")).split(",")
            if p.strip()
        ),
        dpo_private_key=Path(env.get("RECORDS_DPO_PRIVATE_KEY") or secrets_dir / "dpo_ed25519.pem").resolve(),
        dpo_key_passphrase=Secret(env["RECORDS_DPO_KEY_PASSPHRASE"]) if env.get("RECORDS_DPO_KEY_PASSPHRASE") else None,
        sql_user=env.get("RECORDS_SQL_USER") or None,
        sql_password=Secret(env["RECORDS_SQL_PASSWORD"]) if env.get("RECORDS_SQL_PASSWORD") else None,
        clickhouse_cluster=env.get("CLICKHOUSE_CLUSTER") or None,
        command_private_key=Path(env.get("RECORDS_COMMAND_KEY") or secrets_dir / "command_ed25519.pem").resolve(),
        command_public_keys=tuple(
            Path(p.strip()).resolve()
            for p in (env.get("RECORDS_COMMAND_PUBLIC_KEYS") or str(secrets_dir / "command_ed25519.pub.pem")).split(",")
            if p.strip()
        ),
        command_max_age=timedelta(hours=_positive(env, "RECORDS_COMMAND_MAX_AGE_HOURS", 72)),
        fault_erasure_pause_s=_positive(env, "RECORDS_FAULT_ERASURE_PAUSE_S", 0),
    )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ConfigError(f"{name} must be a positive whole number")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name} must be a port number (0 turns it off)")
    return int(raw)

"""The composition root: the one place that turns `Settings` into objects and hands them
to the stages. Stages and the core never read settings to build a collaborator of their
own, so a setting (a schema registry, a pepper, a key) reaches every stage or none.
Keys are read when a worker starts, never when the first message needs one: a key that is
missing or unreadable stops the worker at once with a one-line ConfigError.

| object | built here by | handed to |
| --- | --- | --- |
| wire format (`Serde`, registry or not) | `Wiring.serde` | streams, sink, DSR executor, producers, `records dsr` |
| subject keyer (the pepper) | `Wiring.keyer()` | streams worker, producers |
| trusted DPO public keys | `Wiring.trusted_dpo_keys()` | streams worker, sink (DSR executor) |
| the streams stage's command signing key | `Wiring.command_signer()` | streams worker |
| trusted command public keys | `Wiring.trusted_command_keys()` | sink (DSR executor) |
| ClickHouse client (embedded chDB or a server) | `Wiring.clickhouse()` | CLI commands, demo |
| event producer | `Wiring.event_producer()` | `records produce`, `records simulate` |
"""

from __future__ import annotations

from functools import cached_property

from clickhouse_connect.driver.client import Client

from pipeline.access_users import Credential
from pipeline.clickhouse import connect
from pipeline.config import Settings, load_settings
from pipeline.dsr import TrustedKeys, generate_keypair, load_private_key, load_public_keys, load_trusted_keys
from pipeline.dsr_contract import CommandSigner
from pipeline.event_producer import EventProducer
from pipeline.exceptions import ConfigError
from pipeline.serde import Serde, registry_client
from pipeline.subject_keys import SubjectKeyer, load_pepper


class Wiring:
    """Objects built from one `Settings` (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()

    @cached_property
    def serde(self) -> Serde:
        """One per process: the decoders of every stage share its registry client."""
        url = self.settings.schema_registry_url
        serde = Serde(registry=registry_client(url) if url else None)
        if url and url.startswith("mock://"):
            # A mock registry lives inside one process and numbers schemas in the order they
            # are registered: registering the whole catalog in one fixed order gives every
            # process of a test run the same schema ids.
            for name in serde.catalog.names:
                serde.input_encoder(name)
        return serde

    def keyer(self, *, allow_demo: bool = False) -> SubjectKeyer:
        """Subject keys under the pepper; only the local demo may generate one."""
        return SubjectKeyer(load_pepper(self.settings, allow_demo=allow_demo))

    def trusted_dpo_keys(self, *, demo: bool = False) -> TrustedKeys:
        """The DPO public keys requests must be signed with. `demo`: create the demo's key
        pair first if none exists (`records dsr ...` signs with RECORDS_DPO_PRIVATE_KEY)."""
        settings = self.settings
        public_keys = settings.dpo_public_keys
        if demo and public_keys and not public_keys[0].exists() and settings.dpo_private_key is not None:
            passphrase = settings.dpo_key_passphrase.get().encode() if settings.dpo_key_passphrase else None
            generate_keypair(settings.dpo_private_key, public_keys[0], passphrase)
        return load_trusted_keys(public_keys)  # none configured or readable: ConfigError

    def command_signer(self, *, demo: bool = False) -> CommandSigner:
        """The key the streams stage signs the sink's commands with (pipeline/dsr_contract.py).
        `demo`: create it first if none exists; the demo's sink trusts its public half
        (the default RECORDS_COMMAND_PUBLIC_KEYS)."""
        settings = self.settings
        command_key = settings.command_private_key
        if command_key is None:
            raise ConfigError("set RECORDS_COMMAND_KEY: the streams worker signs its commands to the sink")
        if demo and not command_key.exists() and settings.command_public_keys:
            generate_keypair(command_key, settings.command_public_keys[0])
        hint = "set RECORDS_COMMAND_KEY (or run with --demo to generate one locally)"
        return CommandSigner(load_private_key(command_key, holder="command", hint=hint))

    def trusted_command_keys(self) -> TrustedKeys:
        """The streams stage's command public keys the sink trusts (RECORDS_COMMAND_PUBLIC_KEYS);
        ConfigError when none is configured or one is missing or not an Ed25519 PEM key."""
        return load_public_keys(
            self.settings.command_public_keys, holder="command", setting="RECORDS_COMMAND_PUBLIC_KEYS"
        )

    def clickhouse(self, *, readonly: bool = False, credential: Credential | None = None) -> Client:
        """A client of the configured store (embedded while no sink owns it, else through the
        owner's endpoint, or the server); the caller closes it. `credential`: whose queries."""
        return connect(self.settings, readonly=readonly, credential=credential)

    def event_producer(self, keyer: SubjectKeyer | None = None) -> EventProducer:
        return EventProducer(self.settings.kafka, serde=self.serde, keyer=keyer)

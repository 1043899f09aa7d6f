"""The privacy policy as data: `pipeline/policy.toml`, read here and nowhere else.

Streams ask it what a field needs, the DDL asks it for tables and retention, the
retention jobs and the compliance report ask it for limits. Pure data, no I/O beyond
reading the file once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.exceptions import ConfigError
from pipeline.retention_period import RetentionPeriod

POLICY_FILE = Path(__file__).with_name("policy.toml")

LEGAL_BASES = frozenset({"customer_relationship", "legitimate_interest", "consent", "legal_obligation"})
NEEDS = frozenset({"contact_consent", "cookie.functional", "cookie.analytics", "geolocation"})
RECORD_REQUIREMENTS = frozenset({"recording_notice_before_start"})
# Who set a record type's retention: the notice (§8), or the controller where the notice
# states no limit (contact forms).
RETENTION_SETTERS = frozenset({"notice", "controller"})


@dataclass(frozen=True)
class FieldRule:
    name: str
    category: str
    basis: str
    identifier: bool = False
    needs: str | None = None
    channels: tuple[str, ...] | None = None

    def applies_to(self, channel: str | None) -> bool:
        """Whether `needs` applies for a record of this channel."""
        return self.channels is None or channel in self.channels


@dataclass(frozen=True)
class RecordPolicy:
    record_type: str
    table: str
    schema: str
    period: RetentionPeriod  # the notice's limit as a calendar interval
    time_field: str
    description: str
    fields: Mapping[str, FieldRule] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    retention_set_by: str = "notice"  # notice | controller (RETENTION_SETTERS)

    @property
    def retention_days(self) -> int:
        """The period in nominal days (365 a year, 30 a month), for display and charts
        only: expiry is decided by `period` (calendar arithmetic), never by this."""
        return self.period.nominal_days

    @property
    def identifier_fields(self) -> tuple[str, ...]:
        return tuple(name for name, rule in self.fields.items() if rule.identifier)


@dataclass(frozen=True)
class Notice:
    controller: str
    contact: str
    purposes: tuple[str, ...]
    legal_bases: tuple[str, ...]
    recipients: tuple[str, ...]
    transfers: str
    automated_decisions: str


LOCATION_ROLES = frozenset({"store", "processor", "recipient"})


@dataclass(frozen=True)
class Location:
    """Where one store, processor or recipient processes the register (notice §7)."""

    name: str
    role: str  # store | processor | recipient
    country: str  # ISO 3166-1 alpha-2
    safeguard: str | None = None  # required outside the EU/EEA


@dataclass(frozen=True)
class Processing:
    eu_eea: frozenset[str]
    kubernetes_regions: tuple[str, ...]
    locations: tuple[Location, ...]

    def in_eu_eea(self, location: Location) -> bool:
        return location.country in self.eu_eea

    def unsafeguarded(self) -> tuple[Location, ...]:
        """Locations outside the EU/EEA without a recorded transfer safeguard."""
        return tuple(loc for loc in self.locations if not self.in_eu_eea(loc) and not loc.safeguard)


@dataclass(frozen=True)
class Policy:
    notice: Notice
    records: Mapping[str, RecordPolicy]
    erasure_max_linger: timedelta
    request_max_age: timedelta
    processing: Processing
    earliest_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew: timedelta = timedelta(hours=24)
    erased_keys_retention: timedelta = timedelta(days=30)
    export_retention: timedelta = timedelta(days=30)
    # how long a recording waits for its call before it is held as `call_unknown`
    recording_call_grace: timedelta = timedelta(hours=1)

    def record(self, record_type: str) -> RecordPolicy:
        try:
            return self.records[record_type]
        except KeyError:
            raise ConfigError(f"policy has no record type {record_type!r}") from None

    def for_schema(self, schema_full_name: str) -> RecordPolicy | None:
        return next((r for r in self.records.values() if r.schema == schema_full_name), None)


def _field_rule(record_type: str, name: str, raw: Mapping[str, Any]) -> FieldRule:
    where = f"policy fields.{record_type}.{name}"
    unknown = set(raw) - {"category", "basis", "identifier", "needs", "channels"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    basis = raw.get("basis")
    if basis not in LEGAL_BASES:
        raise ConfigError(f"{where}: basis must be one of {', '.join(sorted(LEGAL_BASES))}")
    needs = raw.get("needs")
    if needs is not None and needs not in NEEDS:
        raise ConfigError(f"{where}: needs must be one of {', '.join(sorted(NEEDS))}")
    if needs is None and basis == "consent":
        raise ConfigError(f"{where}: a consent-based field must say which consent it needs")
    channels = raw.get("channels")
    return FieldRule(
        name=name,
        category=str(raw.get("category", "")),
        basis=basis,
        identifier=bool(raw.get("identifier", False)),
        needs=needs,
        channels=tuple(channels) if channels is not None else None,
    )


def _processing(raw: Mapping[str, Any]) -> Processing:
    locations = []
    for index, spec in enumerate(raw["locations"]):
        where = f"policy processing.locations[{index}]"
        unknown = set(spec) - {"name", "role", "country", "safeguard"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if spec.get("role") not in LOCATION_ROLES:
            raise ConfigError(f"{where}: role must be one of {', '.join(sorted(LOCATION_ROLES))}")
        country = str(spec.get("country", ""))
        if len(country) != 2 or not country.isupper():
            raise ConfigError(f"{where}: country must be an ISO 3166-1 alpha-2 code")
        locations.append(Location(str(spec["name"]), spec["role"], country, spec.get("safeguard") or None))
    return Processing(
        eu_eea=frozenset(raw["eu_eea"]),
        kubernetes_regions=tuple(raw["kubernetes_regions"]),
        locations=tuple(locations),
    )


def _period(record_type: str, spec: Mapping[str, Any]) -> RetentionPeriod:
    """`retention = "2 years"` (calendar interval) or the older `retention_days = N`."""
    where = f"policy records.{record_type}"
    if "retention" in spec and "retention_days" in spec:
        raise ConfigError(f"{where}: give retention or retention_days, not both")
    try:
        if "retention" in spec:
            return RetentionPeriod.parse(spec["retention"])
        return RetentionPeriod(spec["retention_days"], "DAY")
    except KeyError:
        raise ConfigError(f"{where}: retention is missing") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}.retention: {exc}") from None


def _positive(section: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"policy {where}.{key} must be a positive whole number")
    return value


def parse_policy(raw: Mapping[str, Any]) -> Policy:
    """Validate and type a policy document (the parsed TOML)."""
    try:
        notice = Notice(
            controller=raw["notice"]["controller"],
            contact=raw["notice"]["contact"],
            purposes=tuple(raw["notice"]["purposes"]),
            legal_bases=tuple(raw["notice"]["legal_bases"]),
            recipients=tuple(raw["notice"]["recipients"]),
            transfers=raw["notice"]["transfers"],
            automated_decisions=raw["notice"]["automated_decisions"],
        )
        records: dict[str, RecordPolicy] = {}
        for record_type, spec in raw["records"].items():
            rules = {
                name: _field_rule(record_type, name, rule)
                for name, rule in raw.get("fields", {}).get(record_type, {}).items()
            }
            requires = tuple(spec.get("requires", ()))
            if set(requires) - RECORD_REQUIREMENTS:
                raise ConfigError(f"policy records.{record_type}.requires: unknown requirement")
            set_by = spec.get("retention_set_by", "notice")
            if set_by not in RETENTION_SETTERS:
                setters = ", ".join(sorted(RETENTION_SETTERS))
                raise ConfigError(f"policy records.{record_type}.retention_set_by must be one of {setters}")
            period = _period(record_type, spec)
            records[record_type] = RecordPolicy(
                record_type=record_type,
                table=spec["table"],
                schema=spec["schema"],
                period=period,
                time_field=spec["time_field"],
                description=spec["description"],
                fields=rules,
                requires=requires,
                retention_set_by=set_by,
            )
        unknown_field_groups = set(raw.get("fields", {})) - set(records)
        if unknown_field_groups:
            raise ConfigError(f"policy fields for unknown record types: {', '.join(sorted(unknown_field_groups))}")
        times = raw.get("event_times", {})
        earliest = times.get("earliest", date(2000, 1, 1))
        if not isinstance(earliest, date) or isinstance(earliest, datetime):
            raise ConfigError("policy event_times.earliest must be a date (YYYY-MM-DD)")
        return Policy(
            notice=notice,
            records=records,
            erasure_max_linger=timedelta(days=int(raw["erasure"]["max_linger_days"])),
            request_max_age=timedelta(hours=int(raw["erasure"]["request_max_age_hours"])),
            processing=_processing(raw["processing"]),
            earliest_event_time=datetime(earliest.year, earliest.month, earliest.day, tzinfo=UTC),
            max_future_skew=timedelta(hours=_positive(times, "max_future_skew_hours", 24, "event_times")),
            erased_keys_retention=timedelta(
                days=_positive(raw["erasure"], "erased_keys_retention_days", 30, "erasure")
            ),
            export_retention=timedelta(days=_positive(raw.get("exports", {}), "retention_days", 30, "exports")),
            recording_call_grace=timedelta(
                minutes=_positive(raw.get("recordings", {}), "call_grace_minutes", 60, "recordings")
            ),
        )
    except KeyError as exc:
        raise ConfigError(f"policy is missing {exc.args[0]!r}") from None


def load_policy(path: Path = POLICY_FILE) -> Policy:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read policy {path.name}: {exc}") from None
    return parse_policy(raw)


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return load_policy()

"""The Avro contracts in `schemas/avro/`: loaded and parsed once, found by name or by
their CRC-64-AVRO fingerprint (the key of Avro single-object encoding).

Released versions of each schema are kept in `schemas/avro/released/<Name>.v<N>.avsc`
so the compatibility check can compare the working copy with what producers and
consumers already run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pipeline.exceptions import RecordsError

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "avro"
RELEASED_DIR = SCHEMA_DIR / "released"
_RELEASED_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>\d+)\.avsc$")


class SchemaError(RecordsError):
    """A schema file is missing, unreadable or not valid Avro."""


@dataclass(frozen=True)
class AvroSchema:
    """One parsed record schema with what the wire formats need."""

    full_name: str
    definition: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes = field(repr=False)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.definition["fields"])

    @classmethod
    def from_definition(cls, definition: dict[str, Any], path: Path | None = None) -> AvroSchema:
        where = path.name if path else "schema"
        try:
            parsed = fastavro.parse_schema(definition)
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise SchemaError(f"{where}: not a valid Avro schema: {exc}") from exc
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise SchemaError(f"{where}: the top level must be a record")
        canonical = to_parsing_canonical_form(parsed)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        return cls(parsed["name"], definition, parsed, canonical, fp, path)

    @classmethod
    def from_file(cls, path: Path) -> AvroSchema:
        try:
            definition = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path.name}: cannot read schema: {exc}") from exc
        return cls.from_definition(definition, path)


class SchemaCatalog:
    """Every current schema of the repository, by full name, short name and fingerprint."""

    def __init__(self, schemas: list[AvroSchema]) -> None:
        self._by_name: dict[str, AvroSchema] = {}
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        for schema in schemas:
            self.add(schema)

    @classmethod
    def from_directory(cls, directory: Path = SCHEMA_DIR) -> SchemaCatalog:
        paths = sorted(directory.glob("*.avsc"))
        if not paths:
            raise SchemaError(f"no .avsc files in {directory}")
        return cls([AvroSchema.from_file(p) for p in paths])

    def add(self, schema: AvroSchema) -> None:
        """Register a schema (also used for released versions that writers may still use)."""
        self._by_fingerprint[schema.fingerprint] = schema
        self._by_name.setdefault(schema.full_name, schema)
        self._by_name.setdefault(schema.name, schema)

    def get(self, name: str) -> AvroSchema:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"unknown schema {name!r}; known: {', '.join(self.names)}") from None

    def by_fingerprint(self, fp: bytes) -> AvroSchema | None:
        return self._by_fingerprint.get(fp)

    @property
    def names(self) -> list[str]:
        return sorted({s.full_name for s in self._by_name.values()})

    def __iter__(self) -> Iterator[AvroSchema]:
        seen: set[str] = set()
        for schema in self._by_name.values():
            if schema.full_name not in seen:
                seen.add(schema.full_name)
                yield schema


def released_versions(directory: Path = RELEASED_DIR) -> dict[str, list[tuple[int, AvroSchema]]]:
    """Released versions per short schema name, oldest first."""
    found: dict[str, list[tuple[int, AvroSchema]]] = {}
    for path in sorted(directory.glob("*.avsc")):
        match = _RELEASED_NAME.match(path.name)
        if match is None:
            raise SchemaError(f"{path.name}: released schemas are named <RecordName>.v<N>.avsc")
        found.setdefault(match["name"], []).append((int(match["version"]), AvroSchema.from_file(path)))
    for versions in found.values():
        versions.sort(key=lambda item: item[0])
    return found


@lru_cache(maxsize=1)
def default_catalog() -> SchemaCatalog:
    """The repository's schemas, plus every released version so old writers still decode."""
    catalog = SchemaCatalog.from_directory()
    if RELEASED_DIR.is_dir():
        for versions in released_versions().values():
            for _, schema in versions:
                catalog.add(schema)
    return catalog

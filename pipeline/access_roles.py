"""Pure: the roles of the embedded query endpoint and what each may read.

The same role names as the ClickHouse server setup (deploy/), so an analyst's grants mean
the same in embedded and server mode:

| role | reads |
| --- | --- |
| analyst | `analyst.*` (the pseudonymised views), nothing else |
| dpo | `records.*` and `analyst.*`, and the catalogue tables `system.tables/columns/databases` |
| pipeline | what the CLI's own checks read: `records.*`, `analyst.*`, the catalogue and `system.parts` |

Every role may read `system.one` (a SELECT without FROM) and `system.settings` (what
clickhouse-connect reads when it connects). No role reads any other `system.*` table
(`system.mutations` and the query log hold query text), files, URLs or table functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.clickhouse_ddl import ANALYST_DB, RECORDS_DB

SYSTEM_DB = "system"
_EVERYONE = frozenset({"system.one", "system.settings"})
_CATALOGUE = frozenset({"system.tables", "system.columns", "system.databases"})


class Role(StrEnum):
    analyst = "analyst"
    dpo = "dpo"
    pipeline = "pipeline"


@dataclass(frozen=True)
class Grants:
    """What one role may read: whole databases and single tables (`db.table`)."""

    databases: frozenset[str]
    tables: frozenset[str]
    default_database: str

    def may_read(self, table: str) -> bool:
        """`table` is `database.name`, as the engine resolved it."""
        database = table.split(".", 1)[0]
        return database in self.databases or table in self.tables

    def may_use_database(self, database: str) -> bool:
        """A database whose names a query may mention (qualified or as its default)."""
        return database in self.databases or any(t.startswith(database + ".") for t in self.tables)


GRANTS: dict[Role, Grants] = {
    Role.analyst: Grants(frozenset({ANALYST_DB}), _EVERYONE, ANALYST_DB),
    Role.dpo: Grants(frozenset({RECORDS_DB, ANALYST_DB}), _EVERYONE | _CATALOGUE, RECORDS_DB),
    Role.pipeline: Grants(frozenset({RECORDS_DB, ANALYST_DB}), _EVERYONE | _CATALOGUE | {"system.parts"}, RECORDS_DB),
}


def parse_role(text: str) -> Role:
    """The role named `text`; ValueError naming the valid ones otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"unknown role {text!r}: use one of {', '.join(r.value for r in Role)}") from None

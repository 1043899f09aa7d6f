"""Pure: whether one query may run on the embedded endpoint, decided on the engine's own parse.

The endpoint (pipeline/query_endpoint.py) asks the engine three things and this module
decides on the answers, so nothing here guesses at SQL syntax:

1. `formatQuery(<final text>)`: the text exactly as it would run (the client's SQL plus the
   ` FORMAT x` the endpoint appends) parsed as ONE statement; multi-statements fail here.
   `split_formatted` takes the engine's formatting apart into body and output format; the
   endpoint later runs that same formatted text, so what was checked is what runs.
2. `EXPLAIN AST <body>`: `check_ast` allows only SELECT, DESCRIBE TABLE, EXISTS TABLE and
   SHOW TABLES/DATABASES; refuses INTO OUTFILE (a literal child of the statement), the
   SETTINGS clause (settings travel as URL parameters, allow-listed), every table function,
   functions that reach outside the store, table names that are not plain identifiers
   (`FROM '/path'` reads a file in clickhouse-local) and tables the role may not read.
3. `EXPLAIN QUERY TREE <body>` (SELECT only, after 2 passed): `tables_of_query_tree` lists
   the tables as the analyzer resolved them (CTEs, `IN table`, scalar subqueries), which
   `check_tables` holds against the role's grants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.access_roles import Grants

READONLY, ACCESS_DENIED, SYNTAX_ERROR, UNKNOWN_FORMAT, UNKNOWN_SETTING = 164, 497, 62, 73, 115

ALLOWED_FORMATS = frozenset(
    {
        "TabSeparated",
        "TabSeparatedRaw",
        "TabSeparatedWithNames",
        "TabSeparatedWithNamesAndTypes",
        "TSV",
        "TSVRaw",
        "TSVWithNames",
        "TSVWithNamesAndTypes",
        "CSV",
        "CSVWithNames",
        "CSVWithNamesAndTypes",
        "JSON",
        "JSONCompact",
        "JSONEachRow",
        "JSONCompactEachRow",
        "JSONStrings",
        "Native",
        "RowBinary",
        "RowBinaryWithNamesAndTypes",
        "Arrow",
        "ArrowStream",
        "Parquet",
        "Pretty",
        "PrettyCompact",
        "PrettyCompactMonoBlock",
        "Vertical",
        "Markdown",
        "Values",
    }
)
# Settings a client may set per query (URL parameters). Limits are the endpoint's own.
ALLOWED_SETTINGS = frozenset(
    {
        "date_time_input_format",
        "date_time_output_format",
        "cast_string_to_dynamic_use_inference",
        "output_format_arrow_string_as_string",
        "output_format_json_quote_64bit_integers",
        "output_format_json_quote_decimals",
        "output_format_json_named_tuples_as_objects",
        "output_format_decimal_trailing_zeros",
        "output_format_pretty_max_rows",
        "output_format_pretty_color",
        "format_csv_delimiter",
        "max_block_size",
        "max_threads",
        "join_use_nulls",
        "session_timezone",
        "extremes",
    }
)
# Regular functions that read files, reach other servers or read tables by name.
_EXTERNAL_FUNCTIONS = frozenset({"file", "url", "input", "filesystem", "hascolumnintable", "python", "executable"})
_EXTERNAL_PREFIXES = ("dict", "joinget", "s3", "remote", "cluster", "azure", "hdfs", "mysql", "postgres", "sqlite")
_STATEMENTS = {
    "SelectWithUnionQuery": "select",
    "SelectIntersectExceptQuery": "select",
    "DescribeQuery": "describe",
    "ExistsTableQuery": "exists",
    "ShowTables": "show",
}
_PLAIN = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_NAME = re.compile(rf"^(?:({_PLAIN})\.)?({_PLAIN})$")
_NODE = re.compile(r"^( *)(\S+)(?: (.*?))?(?: \(children \d+\))?$")
_ALIAS = re.compile(r" \(alias [^)]*\)$")
_FORMAT_LINE = re.compile(r"\nFORMAT (\w+)$")
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_TREE_TABLE = re.compile(r"^\s*TABLE id: \d+.*?\btable_name: (\S+)", re.MULTILINE)
_TREE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: ", re.MULTILINE)
_ONLY_READS = (
    "the embedded store's HTTP endpoint is read-only: only SELECT, DESCRIBE TABLE, EXISTS TABLE and SHOW TABLES "
    "run here (stop the sink to write, or use a ClickHouse server)"
)


class Refused(Exception):
    """A request the endpoint does not run; carries ClickHouse's error code and name. The
    message names a rule or a table, never a literal of the query."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name})")
        self.code = code
        self.name = name
        self.reason = message
        self.tables: tuple[str, ...] = ()  # what the refused query named, for the access log


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS"})
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)


def check_statement_kind(sql: str) -> None:
    """Raise Refused unless the text starts with a read keyword (a cheap first gate, before
    the body of an INSERT is read; the engine's parse decides)."""
    rest = sql[_LEADING_NOISE.match(sql).end() :]  # type: ignore[union-attr]
    word = re.match(r"[A-Za-z]+", rest)
    if word is None or word.group(0).upper() not in _READ_KEYWORDS:
        raise read_only()


def trailing_format(sql: str) -> str | None:
    """The FORMAT the client wrote at the end, if any (the engine's parse confirms it)."""
    found = _TRAILING_FORMAT.search(sql)
    return found.group(1) if found else None


def read_only() -> Refused:
    return Refused(READONLY, "READONLY", _ONLY_READS)


def denied(message: str) -> Refused:
    return Refused(ACCESS_DENIED, "ACCESS_DENIED", message)


def string_literal(text: str) -> str:
    """`text` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_format(name: str) -> str:
    if name not in ALLOWED_FORMATS:
        raise Refused(UNKNOWN_FORMAT, "UNKNOWN_FORMAT", "this output format is not served by the embedded endpoint")
    return name


def check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """The client's per-query settings, when every one is allow-listed."""
    for name in settings:
        if name not in ALLOWED_SETTINGS:
            raise Refused(
                READONLY,
                "READONLY",
                f"setting {name[:64]} cannot be changed on the embedded endpoint",
            )
    return dict(settings)


@dataclass(frozen=True)
class Formatted:
    """The engine's formatting of the final text: the statement and its output format."""

    body: str
    format: str

    @property
    def text(self) -> str:
        return f"{self.body}\nFORMAT {self.format}"


def split_formatted(formatted: str) -> Formatted:
    """Take `formatQuery`'s output apart; it ends with the FORMAT clause on its own line
    (newlines inside literals and names are escaped by the formatter)."""
    found = _FORMAT_LINE.search(formatted)
    if found is None:
        # e.g. a SETTINGS clause after FORMAT
        raise Refused(READONLY, "READONLY", "the statement must end with its FORMAT clause and carry no SETTINGS")
    body = formatted[: found.start()]
    if _OUTFILE.search(body):
        raise denied("INTO OUTFILE is not available on the embedded store's HTTP endpoint")
    return Formatted(body, check_format(found.group(1)))


@dataclass(frozen=True)
class Statement:
    """What `check_ast` found: the statement kind and the tables it names."""

    kind: str
    tables: tuple[str, ...]


def check_ast(ast: str, grants: Grants, database: str, databases: frozenset[str]) -> Statement:
    """Raise Refused unless the `EXPLAIN AST` text is an allowed read for `grants`.

    database: where unqualified table names resolve; databases: every database the engine
    has (a compound identifier starting with one of them names a table, as in `x IN db.t`)."""
    lines = [line for line in ast.splitlines() if line.strip()]
    if not lines:
        raise read_only()
    top = _NODE.match(lines[0])
    kind = _STATEMENTS.get(top.group(2) if top else "")
    if kind is None:
        raise read_only()
    tables: list[str] = []
    parents: list[str] = []
    for line in lines[1:]:
        found = _NODE.match(line)
        if found is None:
            raise read_only()
        depth, node, rest = len(found.group(1)), found.group(2), _ALIAS.sub("", found.group(3) or "")
        del parents[depth - 1 :]
        parent = parents[-1] if parents else (top.group(2) if top else "")
        parents.append(node)
        if depth == 1 and node == "Literal":
            raise denied("INTO OUTFILE is not available on the embedded store's HTTP endpoint")
        if node == "Set":
            raise Refused(READONLY, "READONLY", "a SETTINGS clause is not served here: pass settings as URL parameters")
        if node == "Function":
            _check_function(rest, parent)
        elif node == "TableIdentifier":
            tables.append(_table(rest, database))
        elif node == "Identifier" and "." in rest and rest.split(".", 1)[0] in databases:
            tables.append(_table(".".join(rest.split(".")[:2]), database))
        elif node == "Subquery" and kind == "describe":
            raise read_only()
    if kind == "exists" and top is not None:
        tables.append(_table(".".join((top.group(3) or "").split()[:2]), database))
    if kind == "show":
        tables += ["system.tables", "system.databases"]
    check_tables(tables, grants)
    return Statement(kind, tuple(dict.fromkeys(tables)))


def tables_of_query_tree(tree: str) -> tuple[str, ...]:
    """The tables an `EXPLAIN QUERY TREE` resolved; Refused on any table function."""
    if _TREE_FUNCTION.search(tree):
        raise denied("table functions are not available on the embedded store's HTTP endpoint")
    return tuple(dict.fromkeys(_TREE_TABLE.findall(tree)))


def check_tables(tables: list[str] | tuple[str, ...], grants: Grants) -> None:
    for table in tables:
        if not grants.may_read(table):
            refused = denied(f"not enough privileges to read {table[:128]}")
            refused.tables = tuple(dict.fromkeys(tables))
            raise refused


def _table(name: str, database: str) -> str:
    found = _TABLE_NAME.match(name)
    if found is None:
        raise denied("only plain database.table names are served here (no file paths or quoted names)")
    return f"{found.group(1) or database}.{found.group(2)}"


def _check_function(name: str, parent: str) -> None:
    if parent == "TableExpression":
        raise denied("table functions are not available on the embedded store's HTTP endpoint")
    lowered = name.lower()
    if lowered in _EXTERNAL_FUNCTIONS or lowered.startswith(_EXTERNAL_PREFIXES):
        raise denied(f"function {name[:64]} reaches outside the store and is not available here")

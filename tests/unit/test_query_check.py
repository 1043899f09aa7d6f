"""Pure: the endpoint's verdicts on the engine's parse (AST texts as chDB prints them)."""

from __future__ import annotations

import pytest

from pipeline.access_roles import GRANTS, Role
from pipeline.query_check import Refused, check_ast, split_formatted, string_literal, tables_of_query_tree

DATABASES = frozenset({"analyst", "records", "system", "default", "INFORMATION_SCHEMA", "information_schema"})
SELECT_FROM = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {table}
"""


def test_the_engines_formatting_splits_into_statement_and_format() -> None:
    formatted = split_formatted("SELECT 1\nFORMAT JSONEachRow")
    assert (formatted.body, formatted.format, formatted.text) == (
        "SELECT 1",
        "JSONEachRow",
        "SELECT 1\nFORMAT JSONEachRow",
    )
    for text in (
        "SELECT 1\nFORMAT TSV\nSETTINGS a = 1",
        "SELECT 1\nINTO OUTFILE 'x'\nFORMAT TSV",
        "SELECT 1\nFORMAT Template",
    ):
        with pytest.raises(Refused):
            split_formatted(text)


@pytest.mark.parametrize(
    ("table", "role", "allowed"),
    [
        ("TableIdentifier analyst.calls (alias c)", Role.analyst, True),
        ("TableIdentifier calls", Role.analyst, True),  # default database analyst
        ("TableIdentifier records.calls", Role.analyst, False),
        ("TableIdentifier records.calls", Role.dpo, True),
        ("TableIdentifier /etc/hostname", Role.pipeline, False),
        ("TableIdentifier default./etc/hostname", Role.pipeline, False),
        ("Function numbers (children 1)", Role.pipeline, False),
    ],
)
def test_tables_and_table_functions(table: str, role: Role, allowed: bool) -> None:
    ast = SELECT_FROM.format(table=table)
    if allowed:
        check_ast(ast, GRANTS[role], "analyst", DATABASES)
    else:
        with pytest.raises(Refused) as refused:
            check_ast(ast, GRANTS[role], "analyst", DATABASES)
        assert refused.value.code == 497


def test_outfile_settings_and_other_statements_are_refused() -> None:
    describe_outfile = (
        "DescribeQuery (children 3)\n TableExpression (children 1)\n  Subquery (children 1)\n Literal \\'x.pth\\'\n"
    )
    settings = "SelectWithUnionQuery (children 3)\n ExpressionList (children 1)\n Set\n Identifier TSV\n"
    for ast in (
        describe_outfile,
        settings,
        "SYSTEM query",
        "KillQueryQuery Literal_UInt64_1 ASYNC (children 1)",
        "Set",
    ):
        with pytest.raises(Refused):
            check_ast(ast, GRANTS[Role.pipeline], "records", DATABASES)


def test_query_tree_tables_and_literals() -> None:
    tree = "QUERY id: 0\n  JOIN TREE\n    TABLE id: 3, alias: __table1, table_name: analyst.calls\n"
    assert tables_of_query_tree(tree) == ("analyst.calls",)
    with pytest.raises(Refused):
        tables_of_query_tree("QUERY id: 0\n  JOIN TREE\n    TABLE_FUNCTION id: 3, table_function_name: file\n")
    assert string_literal("it's a \\ test") == "'it\\'s a \\\\ test'"

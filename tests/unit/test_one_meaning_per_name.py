"""One meaning per name (issue 10): a public class or function name is defined in one
module of the code base only, so `parse_headers`, `Outcome`, `receipt`, `Statement` or
`to_millis` cannot again mean two things (or be written twice). A module may re-export
a name it imports; only definitions count.

Exempt: the CLI modules (records/cli/), whose command functions are named after their
commands and each of which has `register`; and `merge`, the merge function each faust
table state module defines for its own state type; and `main`, the entry point of each
script run as `python -m` (bench/)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "streams", "sink", "retention_jobs", "records", "bench")
EXEMPT_DIRS = (ROOT / "records" / "cli",)
EXEMPT_NAMES = {"merge", "main"}


def _public_definitions(source: str) -> list[str]:
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
    ]


def _defined_twice(modules: dict[str, str]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for module, source in modules.items():
        for name in _public_definitions(source):
            where[name].append(module)
    return {name: sorted(places) for name, places in where.items() if len(places) > 1 and name not in EXEMPT_NAMES}


def test_every_public_name_is_defined_once() -> None:
    modules = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(path.is_relative_to(d) for d in EXEMPT_DIRS)
    }
    assert len(modules) > 80
    assert _defined_twice(modules) == {}, "rename one of them, or share one definition"


def test_the_check_sees_a_second_definition_but_not_a_re_export() -> None:
    modules = {
        "a.py": "def parse_headers(h): ...\nclass Outcome: ...\n",
        "b.py": "class parse_headers: ...\nfrom a import Outcome as Outcome\n",
        "c.py": "def _private(): ...\ndef merge(a, b): ...\n",
        "d.py": "def _private(): ...\ndef merge(a, b): ...\n",
    }
    assert _defined_twice(modules) == {"parse_headers": ["a.py", "b.py"]}

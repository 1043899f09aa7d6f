"""The test suite's own layout: what tests share lives in `tests/support/`, never in another
test module, and the unit tests run without an engine or a broker.

A test module that imports another makes the second one's private builders a contract
nobody states, and collecting one module runs the other's module-level set-up too.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = "tests.support"
# Fixtures of tests/support that start or open a real engine or broker.
ENGINE_FIXTURES = {
    "ch_client",
    "chdb_path",
    "chdb_settings",
    "kafka_bootstrap",
    "kafka_settings",
    "kafka_admin",
    "topic_factory",
}


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "support" not in p.relative_to(TESTS).parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`, relative imports resolved against its package."""
    package = ".".join(("tests", *path.parent.relative_to(TESTS).parts))
    return _imports(path.read_text(encoding="utf-8"), package)


def _imports(source: str, package: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # `from tests.unit import test_x` imports a module by its attribute name
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name.startswith("test_")]
    return out


def _is_test_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "tests" and module != SUPPORT and not module.startswith(f"{SUPPORT}.")


def test_no_test_module_imports_another_test_module() -> None:
    offending = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path in _test_modules()
        for line, module in _imported_modules(path)
        if _is_test_module(module)
    ]
    assert offending == [], "move what tests share into tests/support:\n" + "\n".join(offending)


def test_the_support_package_imports_no_test_module() -> None:
    offending = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path in sorted((TESTS / "support").rglob("*.py"))
        for line, module in _imported_modules(path)
        if _is_test_module(module)
    ]
    assert offending == []


def test_unit_tests_ask_for_no_engine_or_broker() -> None:
    """Any function in tests/unit (test or fixture) taking an engine or broker fixture
    belongs in tests/integration."""
    offending = [
        f"{path.relative_to(TESTS.parent)}:{node.lineno} {node.name}({', '.join(sorted(used))})"
        for path in sorted((TESTS / "unit").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (used := {a.arg for a in node.args.args + node.args.kwonlyargs} & ENGINE_FIXTURES)
    ]
    assert offending == [], "\n".join(offending)


def test_the_layout_check_recognises_every_form_of_import() -> None:
    """The checks above would pass on nothing if they missed a form of import."""
    source = "\n".join(
        [
            "from tests.integration.test_sink import record",
            "import tests.unit.test_enrich",
            "from . import test_enforce_rows",
            "from ..e2e.test_dsr_e2e import TABLES",
            "from tests.support.cli import run_records",
            "from tests import support",
            "from pipeline import topics",
        ]
    )
    flagged = [module for _, module in _imports(source, "tests.unit") if _is_test_module(module)]
    assert flagged == [
        "tests.integration.test_sink",
        "tests.unit.test_enrich",
        "tests.unit",
        "tests.unit.test_enforce_rows",
        "tests.e2e.test_dsr_e2e",
        "tests",
    ]
    assert len(_test_modules()) > 30

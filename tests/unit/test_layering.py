"""Dependencies flow one way: the application layer (`records`) -> the stages (`streams`,
`sink`, `retention_jobs`) -> the core (`pipeline`). A stage never imports another stage,
and nothing below the application layer imports it. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = "pipeline"
STAGES = ("streams", "sink", "retention_jobs")
APP = "records"
ALLOWED = {
    CORE: {CORE},
    **{stage: {CORE, stage} for stage in STAGES},
    APP: {CORE, *STAGES, APP},
}
PACKAGES = tuple(ALLOWED)


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(PACKAGES)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_its_layer_may(package: str) -> None:
    modules = _modules(package)
    assert modules, f"no modules found under {package}/"
    violations = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[package]) for path in modules
    }
    assert {path: bad for path, bad in violations.items() if bad} == {}


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from sink.clickhouse_sink import ClickHouseSink\n    import records.cli\n")
    assert _imported_packages(module) == {"sink", "records"}

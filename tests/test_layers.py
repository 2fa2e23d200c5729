"""The folders are the pipeline: imports run only down the layers, and only loops/ talks HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bulksync"
# Bottom to top. A unit is a top-level module or a stage folder of bulksync/.
LAYERS: list[set[str]] = [
    {"errors", "config", "fields", "logs", "columns", "files", "location"},
    {"source", "state"},
    {"plan"},
    {"loops"},
    {"report"},
    {"sync", "check", "export", "verify"},
    {"cli", "api"},
]
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}
HTTP_LIBRARIES = {"httpx", "tenacity"}
HTTP_UNITS = {"loops", "emulator"}


def unit_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at any depth: function bodies and TYPE_CHECKING blocks too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bulksync":
                found.extend((node.lineno, f"bulksync.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, node.module))
    return found


def allowed(importer: str, imported: str) -> bool:
    if imported in (importer, "__version__"):
        return True
    if importer == "emulator":  # the emulator stands beside the pipeline: it may use the bottom layer only
        return LAYER_OF.get(imported) == 0
    if imported == "emulator":
        return importer == "cli"  # 'bulksync emulator' is a command
    below = LAYER_OF[imported] < LAYER_OF[importer]
    return below or LAYER_OF[imported] == LAYER_OF[importer] == 0  # the shared vocabulary may use itself


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if unit_of(p) not in ("__init__", "__main__"))


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(path) for path in MODULES} - {"emulator"}
    assert units <= set(LAYER_OF), f"add {sorted(units - set(LAYER_OF))} to LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path: Path) -> None:
    importer = unit_of(path)
    wrong = []
    for line, module in imports(path):
        top, _, rest = module.partition(".")
        if top in HTTP_LIBRARIES and importer not in HTTP_UNITS:
            wrong.append(f"line {line}: {module} outside loops/ and emulator/")
        if top == "bulksync" and rest:
            imported = rest.split(".")[0]
            if not allowed(importer, imported):
                wrong.append(f"line {line}: {importer} may not import {module}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from bulksync.cli import main\n    import httpx\n")
    assert [name for _, name in imports(module)] == ["bulksync.cli", "httpx"]
    assert not allowed("plan", "loops") and not allowed("emulator", "state") and allowed("loops", "plan")

"""Arrows point down: each layer imports only the layers beneath it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vws"

# What each package must never import (its own package and lower layers are fine).
FORBIDDEN = {
    "wsrf": ("vws.workspace", "vws.pool", "vws.soap", "vws.security", "spyne"),
    "workspace": ("vws.soap", "spyne", "vws.security"),
    "pool": ("vws.workspace", "vws.soap", "vws.wsrf", "spyne"),
    "store": ("vws.workspace", "vws.pool", "vws.soap", "vws.wsrf", "spyne"),
    "security": ("vws.workspace", "vws.pool", "vws.soap", "vws.store", "spyne"),
}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_downward(package):
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(package)
        for name in imports(path)
        if name.startswith(FORBIDDEN[package])
    }
    assert not offenders


def test_spyne_stays_inside_vws_soap():
    outside = [
        path
        for path in PACKAGE.rglob("*.py")
        if "soap" not in path.relative_to(PACKAGE).parts
        and any(name.split(".")[0] == "spyne" for name in imports(path))
    ]
    assert not outside


def test_only_the_clock_module_reads_the_wall_clock():
    readers = [
        path.relative_to(PACKAGE)
        for path in PACKAGE.rglob("*.py")
        if path.name != "clock.py" and ("datetime.now(" in path.read_text() or "time.time(" in path.read_text())
    ]
    assert not readers

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
    """Wall-clock and monotonic readings, called or imported, only in vws/clock.py: everyone else is handed a Clock."""
    import ast

    readings = {
        "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"},
        "datetime": {"now", "utcnow", "today"},  # the class, also as datetime.datetime
        "date": {"today"},
    }

    def readers(source: str) -> list[str]:
        tree = ast.parse(source)
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        aliases = {alias.asname: alias.name for node in imports for alias in node.names if alias.name in readings}
        owners = {name: name for name in readings} | {alias: name for alias, name in aliases.items() if alias}
        found = [
            f"time.{alias.name}"
            for node in imports
            if isinstance(node, ast.ImportFrom) and node.module == "time"
            for alias in node.names
            if alias.name in readings["time"]
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                owner = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", None)
                if owner in owners and node.attr in readings[owners[owner]]:
                    found.append(f"{owner}.{node.attr}")
        return sorted(found)

    broken = """import datetime, time
from time import monotonic
from datetime import date, datetime as dt
time.time(); time.monotonic(); time.perf_counter(); datetime.datetime.now(); dt.utcnow(); date.today()
datetime.time(12); dt.fromisoformat("2026-01-01")
"""
    assert readers(broken) == sorted(
        [
            "time.monotonic",
            "time.time",
            "time.monotonic",
            "time.perf_counter",
            "datetime.now",
            "dt.utcnow",
            "date.today",
        ]
    )
    offenders = {
        f"{path.relative_to(PACKAGE)}: {reading}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE) != Path("clock.py")
        for reading in readers(path.read_text())
    }
    assert not offenders

"""Arrows point down: the import-linter contracts in setup.cfg hold on the tree, and each can fail.

The contracts are evaluated by import-linter (``lint-imports``), which follows every form of
import (``from vws import soap``, relative imports, ``import vws.x.y``) through grimp's graph.
A broken copy of the tree, with one bad module per contract, shows that each rule bites.
"""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vws"
CONFIG = ROOT / "setup.cfg"
CONTRACT = "importlinter:contract:"


def contracts(config: Path = CONFIG) -> dict[str, configparser.SectionProxy]:
    parser = configparser.ConfigParser()
    parser.read(config)
    return {name.removeprefix(CONTRACT): parser[name] for name in parser.sections() if name.startswith(CONTRACT)}


def lint_imports(tree: Path, config: Path = CONFIG) -> subprocess.CompletedProcess:
    """Run lint-imports over the packages under ``tree`` (vws and clients)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "400"}
    command = [Path(sys.executable).with_name("lint-imports"), "--no-cache", "--config", config]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def verdicts(output: str) -> dict[str, str]:
    """Contract id -> KEPT or BROKEN, read from lint-imports' summary lines."""
    lines = set(output.splitlines())
    return {
        key: verdict
        for key, section in contracts().items()
        for verdict in ("KEPT", "BROKEN")
        if any(line.startswith(f"{section['name']} {verdict}") for line in lines)
    }


def copy_of_tree(tmp_path: Path) -> Path:
    for package in ("vws", "clients"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_every_contract_is_kept_by_the_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == dict.fromkeys(contracts(), "KEPT")


def unplaced(package: Path) -> set[str]:
    """The modules and packages directly in ``package`` (vws) that no contract names."""
    named = {
        line.split()[0]
        for section in contracts().values()
        for value in section.values()
        for line in value.splitlines()
        if line
    }
    children = {f"vws.{path.stem}" for path in package.glob("*.py") if path.stem != "__init__"}
    children |= {f"vws.{path.parent.name}" for path in package.glob("*/__init__.py")}
    return children - named


def test_every_module_of_vws_is_placed_by_some_contract():
    """A new base module or package cannot slip between the contracts unchecked."""
    assert unplaced(PACKAGE) == set()


def test_a_new_module_or_package_no_contract_names_is_found(tmp_path):
    for relative in ("__init__.py", "clock.py", "pool/__init__.py", "caching.py", "cloud/__init__.py"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).touch()
    assert unplaced(tmp_path) == {"vws.caching", "vws.cloud"}


# One bad module per contract, in each form of import the old hand-made check missed.
BREAKS = {
    "layers": [
        ("vws/pool/upward.py", "from vws import soap\n"),
        ("vws/workspace/upward.py", "from ..soap import faults\n"),
        ("vws/service.py", "from vws.cli import admin\n"),
        ("vws/ec2/sideways.py", "from vws.soap import faults\n"),  # the two doors are independent
    ],
    "wsrf-generic": [("vws/wsrf/domain.py", "from . import properties\nfrom ..workspace import states\n")],
    "edge-over-the-facade": [("vws/soap/placing.py", "from vws.pool import placement\n")],
    "ec2-door": [("vws/ec2/placing.py", "from vws.pool import placement\n"), ("vws/ec2/wsrf.py", "import vws.wsrf\n")],
    "security-beside": [("vws/security/stored.py", "import vws.store.database\n")],
    "security-at-the-edge": [("vws/pool/signed.py", "from vws.security import proxy\n")],
    "base": [("vws/clock.py", "from . import demo\n"), ("vws/state_dir.py", "import vws.demo\n")],
    "spyne": [("vws/wsrf/rpc.py", "import spyne.model\n"), ("clients/rpc.py", "from spyne import Application\n")],
    "lxml": [("vws/workspace/xml.py", "from lxml import etree\n"), ("vws/config.py", "import lxml.etree\n")],
    "no-envelopes-below-wsrf": [("vws/pool/envelope.py", "from vws.xmlparse import parse\n")],
    "clients": [("clients/inside.py", "from vws.workspace import states\n")],
    "server-apart-from-clients": [("vws/soap/client.py", "import clients.workspace\n")],
}


def test_each_break_is_of_a_contract_that_exists():
    assert set(BREAKS) == set(contracts())


@pytest.mark.parametrize("contract", sorted(BREAKS))
def test_each_contract_fails_on_a_module_that_breaks_it(tmp_path, contract):
    tree = copy_of_tree(tmp_path)
    for relative, source in BREAKS[contract]:
        path = tree / relative
        path.write_text((path.read_text() if path.exists() else "") + source)
    result = lint_imports(tree)
    assert result.returncode == 1
    found = verdicts(result.stdout)
    assert found.pop(contract) == "BROKEN", result.stdout
    for relative, _ in BREAKS[contract]:
        assert relative.removesuffix(".py").replace("/", ".") in result.stdout
    assert set(found.values()) == {"KEPT"}, "each bad module breaks only the contract it is written for"


def test_a_contract_naming_a_misspelt_package_is_an_error_not_a_pass(tmp_path):
    config = tmp_path / "setup.cfg"
    config.write_text(CONFIG.read_text().replace("source_modules = vws.wsrf\n", "source_modules = vws.wsfr\n"))
    result = lint_imports(ROOT, config)
    assert result.returncode != 0
    assert "vws.wsfr" in result.stdout + result.stderr


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

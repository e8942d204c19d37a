"""The code stays ruff-clean: lint and format, as configured in pyproject.toml."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("vws", "clients", "tests", "bench")


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [("check", "--no-cache"), ("format", "--check", "--no-cache")])
def test_the_tree_is_ruff_clean(command):
    result = ruff(*command, *TREES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_fails_on_a_lint_error_and_on_unformatted_code(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "unused.py").write_text("import os\n")
    (tmp_path / "unformatted.py").write_text("x = {'a':1}\n")
    assert "F401" in ruff("check", "--no-cache", "unused.py", cwd=tmp_path).stdout
    assert ruff("format", "--check", "--no-cache", "unformatted.py", cwd=tmp_path).returncode == 1

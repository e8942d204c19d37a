"""Does every host program the project runs come from a Debian package the Makefile installs?

A program the service itself runs (code in vws/ and clients/, the Makefile's own recipes)
must come from DEB_RUN; one that only tests or benchmarks run may come from DEB_RUN or
DEB_TEST. "Come from" means: shipped by a listed package, by a package those depend on
(recursively), or by the base system a fresh Debian machine starts with. A program that is a
script needs its interpreter and, for a shell script, every command it runs: those are checked
in turn, recursively, for whoever ran the script (virt-xml-validate runs xmllint).
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.debian import Packages, makefile_lists, owners, shipped_as
from tests.programs import SHELLS, Use, shell_commands

RUN, TEST = "DEB_RUN", "DEB_TEST"
RUNTIME_CODE = ("vws/", "clients/", "Makefile:")
# Where Debian packages put programs (a fresh machine's PATH, less /usr/local, which no package uses).
SEARCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class _Need:
    where: str  # path:line of the first run
    programs: tuple[str, ...]  # the program run there, then what each runs in turn
    list_name: str  # the Makefile list that must provide it: RUN or TEST


def audit(makefile: str, uses: Iterable[Use], packages: Packages, search_path: str = SEARCH_PATH) -> list[str]:
    """One line per program that the Makefile's lists do not provide, naming what to add where."""
    lists = makefile_lists(makefile)
    base = packages.base()
    provided = {
        RUN: base | packages.closure(lists.get(RUN, ())),
        TEST: base | packages.closure(lists.get(RUN, ()) + lists.get(TEST, ())),
    }
    needs = [_Need(use.where, (use.program,), RUN if use.where.startswith(RUNTIME_CODE) else TEST) for use in uses]
    verdicts: dict[str, list[str]] = {}  # problem -> where it shows
    checked: set[tuple[Path, str]] = set()
    while needs:
        located = {need: _locate(need.programs[-1], search_path) for need in needs}
        shipped = owners(name for path in located.values() if path for name in shipped_as(path))
        needs = []
        for need, path in sorted(located.items(), key=lambda item: item[0].where):
            problem = _verdict(need, path, shipped, provided)
            if problem:
                verdicts.setdefault(problem, []).append(need.where)
            if path is not None and (path, need.list_name) not in checked:
                checked.add((path, need.list_name))
                needs += [_Need(need.where, need.programs + (command,), need.list_name) for command in runs(path)]
    return sorted(f"{problem} (run at {', '.join(sorted(set(sites)))})" for problem, sites in verdicts.items())


def runs(path: Path) -> list[str]:
    """What a script at ``path`` runs: its interpreter and, for a shell script, its commands."""
    with open(path, "rb") as program:
        head = program.read(256)
    if not head.startswith(b"#!"):
        return []
    words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    interpreter = words[1] if words and Path(words[0]).name == "env" and len(words) > 1 else (words or [""])[0]
    commands = [interpreter] if interpreter else []
    if Path(interpreter).name in SHELLS:
        commands += [command for _, command in shell_commands(path.read_text(errors="replace"))]
    return list(dict.fromkeys(commands))


def _locate(program: str, search_path: str) -> Path | None:
    if "/" in program:
        return Path(program) if Path(program).exists() else None
    candidates = (Path(directory) / program for directory in search_path.split(":"))
    return next((path for path in candidates if path.is_file() and os.access(path, os.X_OK)), None)


def _verdict(need: _Need, path: Path | None, shipped: dict[Path, str], provided: dict[str, set[str]]) -> str | None:
    """None when the program comes from what ``need.list_name`` provides, else what is wrong and how to fix it."""
    run, wanted = " -> ".join(need.programs), need.list_name
    if path is None:
        return f"{run}: not installed, and no package {wanted} installs provides it: add the one that does to {wanted}"
    candidates = [shipped[name] for name in shipped_as(path) if name in shipped]
    if any(package in provided[wanted] for package in candidates):
        return None
    if not candidates:
        return f"{run}: {path} belongs to no Debian package: make a package the Makefile installs provide it"
    package = candidates[-1]  # the real file's package, not an alternatives link's
    if package in provided[TEST]:
        return (
            f"{run}: {path} comes from {package}, which only DEB_TEST provides: the service runs it, move it to {RUN}"
        )
    return f"{run}: {path} comes from Debian package {package}, which the Makefile does not install: add it to {wanted}"

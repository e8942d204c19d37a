"""What dpkg knows about this machine's Debian packages, and what the Makefile installs.

``Packages.read`` takes the installed packages with their Depends and Pre-Depends from one
``dpkg-query`` call; ``closure`` follows them (an alternative or a virtual package is
satisfied by whichever installed package satisfies it, as apt chose). ``owners`` asks
``dpkg -S`` which package ships a file. Everything a fresh machine has before the
Makefile runs is the *base*: the essential packages and those of priority required
(``debootstrap --variant=minbase`` installs exactly those).
"""

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("Package", "db:Status-Abbrev", "Essential", "Priority", "Pre-Depends", "Depends", "Provides")
_LIST = re.compile(r"^(DEB_\w+)\s*:?=\s*((?:.*\\\n)*.*)$", re.MULTILINE)


def makefile_lists(text: str) -> dict[str, tuple[str, ...]]:
    """The Makefile's Debian package lists (``DEB_RUN := ...``), by name."""
    return {name: tuple(words.replace("\\\n", " ").split()) for name, words in _LIST.findall(text)}


@dataclass(frozen=True)
class Package:
    name: str
    base: bool  # essential, or of priority required
    depends: tuple[tuple[str, ...], ...]  # each a choice of alternatives


class Packages:
    """The installed packages, and which names (real or virtual) each one satisfies."""

    def __init__(self, packages: Iterable[Package], provides: dict[str, set[str]]) -> None:
        self.installed = {package.name: package for package in packages}
        self._provides = provides

    @classmethod
    def read(cls) -> "Packages":
        fields = "\t".join(f"${{{name}}}" for name in FIELDS)
        listing = subprocess.run(["dpkg-query", "-W", "-f", fields + "\n"], capture_output=True, text=True, check=True)
        packages, provides = [], {}
        for line in listing.stdout.splitlines():
            name, status, essential, priority, pre_depends, depends, provided = line.split("\t")
            if status.strip() != "ii":
                continue
            packages.append(
                Package(name, essential == "yes" or priority == "required", _relations(pre_depends, depends))
            )
            for virtual in _names(provided):
                provides.setdefault(virtual, set()).add(name)
        return cls(packages, provides)

    def base(self) -> set[str]:
        return {name for name, package in self.installed.items() if package.base}

    def closure(self, roots: Iterable[str]) -> set[str]:
        """The installed packages among ``roots`` and everything they depend on, recursively."""
        found: set[str] = set()
        pending = [name for root in roots for name in self._satisfying((root,))]
        while pending:
            name = pending.pop()
            if name in found:
                continue
            found.add(name)
            for choice in self.installed[name].depends:
                pending.extend(self._satisfying(choice))
        return found

    def _satisfying(self, choice: tuple[str, ...]) -> set[str]:
        real = {name for name in choice if name in self.installed}
        return real or {provider for name in choice for provider in self._provides.get(name, ())}


def _relations(*fields: str) -> tuple[tuple[str, ...], ...]:
    """``a (>= 1) | b, c:any`` -> (("a", "b"), ("c",))."""
    return tuple(
        tuple(_names(clause.replace("|", ","))) for text in fields for clause in text.split(",") if clause.strip()
    )


def _names(text: str) -> list[str]:
    return [re.split(r"[\s(:\[]", item.strip(), maxsplit=1)[0] for item in text.split(",") if item.strip()]


def owners(paths: Iterable[Path]) -> dict[Path, str]:
    """The package that ships each path, for the paths some installed package ships."""
    asked = sorted({str(path) for path in paths})
    if not asked:
        return {}
    listing = subprocess.run(["dpkg", "-S", *asked], capture_output=True, text=True)  # exit 1: some unowned
    found = {}
    for line in listing.stdout.splitlines():
        if line.startswith("diversion by"):
            continue
        names, _, path = line.partition(": ")
        found[Path(path)] = names.split(",")[0].split(":")[0].strip()
    return found


MERGED = ("/bin/", "/sbin/", "/lib/")


def shipped_as(path: Path) -> list[Path]:
    """The names under which dpkg may know ``path``: itself, its target, and their /bin <-> /usr/bin twins.

    Debian 12 merges /bin into /usr/bin, but packages still list a file where they put it.
    """
    names = []
    for candidate in (path, path.resolve()):
        text = str(candidate)
        names.append(candidate)
        if text.startswith(MERGED):
            names.append(Path("/usr" + text))
        elif text.startswith(tuple("/usr" + top for top in MERGED)):
            names.append(Path(text.removeprefix("/usr")))
    return list(dict.fromkeys(names))

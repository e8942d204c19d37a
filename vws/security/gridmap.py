"""The grid-mapfile: which certificate identities may use the service, as which accounts.

One entry a line: a DN, quoted when it holds spaces, then accounts separated by
commas::

    "/O=Grid/OU=vws/CN=Jane Doe" jane,vwsusers
    /O=Grid/CN=bob bob          # an unquoted DN ends at the first blank
    # a comment

Inside quotes ``\\"`` is a quote and ``\\\\`` a backslash; ``\\xx`` (two hex digits)
is one byte of the UTF-8 text (Globus writes non-ASCII DNs so). A DN listed twice gets the
accounts of both lines, first line first. The file is re-read when its mtime or
size changes; a missing file authorizes nobody.
"""

import logging
import os
import re
import threading
from pathlib import Path

from vws.config import ConfigError
from vws.errors import NotAuthorized

log = logging.getLogger(__name__)


class GridMapSyntaxError(ConfigError):
    """A grid-mapfile line that cannot be read."""


_HEX = re.compile(r"[0-9a-fA-F]{2}")
_BLANK = re.compile(r"\s+")
_ACCOUNT_SEPARATORS = re.compile(r"[,\s]+")


def parse_line(line: str) -> tuple[str, tuple[str, ...]] | None:
    """(DN, accounts) of one line, or None for blank and comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith('"'):
        dn, rest = _quoted_dn(text, line)
    else:
        dn, rest = (_BLANK.split(text, maxsplit=1) + [""])[:2]
    if not dn:
        raise GridMapSyntaxError(f"empty DN in {line!r}")
    accounts = _ACCOUNT_SEPARATORS.split(rest.split("#", 1)[0])
    return dn, tuple(account for account in accounts if account)


def _quoted_dn(text: str, line: str) -> tuple[str, str]:
    """The DN between the opening quote of ``text`` and its closing quote, unescaped, and what follows it."""
    dn = bytearray()
    i = 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and _HEX.fullmatch(text, i + 1, i + 3):
            dn.append(int(text[i + 1 : i + 3], 16))  # one byte of the UTF-8 text
            i += 3
        elif text[i] == "\\" and i + 1 < len(text):
            dn += text[i + 1].encode()  # \" is a quote, \\ a backslash, \c is c
            i += 2
        else:
            dn += text[i].encode()
            i += 1
    if i >= len(text):
        raise GridMapSyntaxError(f"unterminated quoted DN in {line!r}")
    return dn.decode("utf-8", errors="replace"), text[i + 1 :]


def parse(text: str, source: str = "<grid-mapfile>") -> dict[str, tuple[str, ...]]:
    """The entries of a grid-mapfile; a line that cannot be used is logged and ignored."""
    entries, ignored = read(text, source)
    for problem in ignored:
        log.warning("%s; line ignored", problem)
    return entries


def read(text: str, source: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The entries, and each line that cannot be used as ``source:line: why``."""
    entries: dict[str, tuple[str, ...]] = {}
    ignored = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            parsed = parse_line(line)
        except GridMapSyntaxError as exc:
            ignored.append(f"{source}:{number}: {exc}")
            continue
        if parsed is None:
            continue
        dn, accounts = parsed
        if not accounts:
            ignored.append(f"{source}:{number}: {dn} maps to no account")
            continue
        entries[dn] = tuple(dict.fromkeys(entries.get(dn, ()) + accounts))  # first mention first, once
    return entries, ignored


def check_file(path: Path) -> None:
    """At start: refuse a grid-mapfile with a line that cannot be used, naming it (a missing file maps nobody).

    Once running, an edit that breaks a line only loses that line (logged), as GT4 did.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the grid-mapfile: {exc.strerror}") from None
    ignored = read(text, str(path))[1]
    if ignored:
        raise ConfigError(ignored[0])


def quote(dn: str) -> str:
    return '"' + dn.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GridMap:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, tuple[str, ...]] = {}

    def _current(self) -> dict[str, tuple[str, ...]]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return self._entries
        with self._lock:
            if stamp != self._stamp:
                if stamp is None:
                    log.warning("grid-mapfile %s is missing: nobody is authorized", self.path)
                    self._entries = {}
                else:
                    self._entries = parse(self.path.read_text(encoding="utf-8", errors="replace"), str(self.path))
                self._stamp = stamp
            return self._entries

    def accounts(self, dn: str) -> tuple[str, ...]:
        """Accounts of ``dn`` (first is the default), empty when it is not listed."""
        return self._current().get(dn, ())

    def require(self, dn: str) -> tuple[str, ...]:
        """The accounts of ``dn``, or NotAuthorized."""
        accounts = self.accounts(dn)
        if not accounts:
            raise NotAuthorized(f"{dn} is not in the grid-mapfile")
        return accounts

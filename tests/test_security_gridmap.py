"""The grid-mapfile: quoting, escapes, several accounts, comments, reload on change."""

import os

import pytest

from vws.errors import NotAuthorized
from vws.security.gridmap import GridMap, parse, parse_line, quote

SAMPLE = r"""
# vws grid-mapfile
"/O=Grid/OU=vws/CN=Jane Doe" jane,vwsusers
/O=Grid/CN=bob bob   # unquoted DN, trailing comment
"/O=Grid/CN=Q \"quoted\" \\ back" q1, q2
"/O=Grid/CN=caf\c3\a9" cafe
"/O=Grid/OU=vws/CN=Jane Doe" extra,jane
"/O=Grid/CN=no account"
"/O=Grid/CN=unterminated jane
	"/O=Grid/CN=Tabbed"	tab
/O=Grid/CN=unquoted-tab	t1,	t2 t1
"/O=Grid/CN=back\\slash \x" bs
"""


@pytest.mark.parametrize(
    "dn, accounts",
    [
        ("/O=Grid/OU=vws/CN=Jane Doe", ("jane", "vwsusers", "extra")),
        ("/O=Grid/CN=bob", ("bob",)),
        ('/O=Grid/CN=Q "quoted" \\ back', ("q1", "q2")),
        ("/O=Grid/CN=café", ("cafe",)),
        ("/O=Grid/CN=Tabbed", ("tab",)),
        ("/O=Grid/CN=unquoted-tab", ("t1", "t2")),  # tabs, commas and blanks separate; repeats collapse
        ("/O=Grid/CN=back\\slash x", ("bs",)),  # \\ is a backslash, \x (no hex pair) is x
        ("/O=Grid/CN=no account", ()),
        ("/O=Grid/CN=unterminated jane", ()),
        ("/O=Grid/OU=vws/CN=Jane", ()),  # prefixes never match
        ("/O=Grid/OU=vws/CN=Jane Doe/CN=12345", ()),  # a proxy's subject is not its identity
    ],
)
def test_accounts(tmp_path, dn, accounts):
    path = tmp_path / "grid-mapfile"
    path.write_text(SAMPLE)
    gridmap = GridMap(path)
    assert gridmap.accounts(dn) == accounts
    if not accounts:
        with pytest.raises(NotAuthorized):
            gridmap.require(dn)


@pytest.mark.parametrize("line", ["", "   ", "# comment", "  # indented comment"])
def test_blank_and_comment_lines(line):
    assert parse_line(line) is None


def test_reload_when_the_file_changes(tmp_path):
    path = tmp_path / "grid-mapfile"
    path.write_text('"/O=Grid/CN=A" a\n')
    gridmap = GridMap(path)
    assert gridmap.accounts("/O=Grid/CN=A") == ("a",) and gridmap.accounts("/O=Grid/CN=B") == ()
    path.write_text('"/O=Grid/CN=B" b\n')
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert gridmap.accounts("/O=Grid/CN=B") == ("b",) and gridmap.accounts("/O=Grid/CN=A") == ()


def test_missing_file_authorizes_nobody(tmp_path):
    gridmap = GridMap(tmp_path / "absent")
    assert gridmap.accounts("/O=Grid/CN=A") == ()
    with pytest.raises(NotAuthorized):
        gridmap.require("/O=Grid/CN=A")


@pytest.mark.parametrize("dn", ["/O=Grid/CN=plain", '/O=Grid/CN=with "quotes"', "/O=Grid/CN=back\\slash"])
def test_quote_round_trips(dn):
    assert parse(f"{quote(dn)} acct\n") == {dn: ("acct",)}

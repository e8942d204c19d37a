"""Test-driver node files: the embedded default node, and bringing its domains back.

A ``test:///path/node.xml`` connection reads the file once and keeps every later change
in the process only: after a restart the node would come back empty while SQLite still
says workspaces run there. So before each test node is opened, the pool writes a copy
of its base file with the domains the pool recorded in ``pool_domains`` (the exact XML
it defined, plus the power state it last put each in, as ``<test:runstate>``) and opens
that copy. The node then holds what a real hypervisor would have kept across a restart
of vws: defined domains, running or paused or shut off. The record is written after
each successful libvirt call, so it is what libvirt was last seen to do, never what the
workspace layer meant to do; reconciliation compares the two as it would on a real node.

``test:///default`` is shared by the whole process and cannot be rebuilt; it is opened
as it is.
"""

import re
from collections.abc import Iterable
from pathlib import Path

from lxml import etree

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
_RUNSTATE = {"running": "1", "paused": "3", "shutoff": "5"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


def node_xml(memory_mb: int, cpus: int, arch: str = "x86_64") -> str:
    """A ``<node>`` with ``cpus`` CPUs and ``memory_mb`` of memory and no domains.

    Its CPU model is the architecture it stands for (``Driver.architectures``): the test
    driver's capabilities say i686 whatever the file holds.
    """
    return (
        "<node>\n"
        f"  <cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>"
        f"<active>{cpus}</active><mhz>2000</mhz><model>{arch}</model></cpu>\n"
        f"  <memory>{memory_mb * 1024}</memory>\n"
        "</node>\n"
    )


def architecture(uri: str) -> str:
    """The architecture a test node stands for: its file's CPU model, else x86_64 (test:///default,
    and files naming no model, whose fictional i686 vws never took for an architecture)."""
    path = file_of(uri)
    model = None if path is None else etree.fromstring(path.read_bytes(), _PARSER).findtext("cpu/model")
    return (model or "").strip() or "x86_64"


def write_node(path: Path, memory_mb: int, cpus: int, arch: str = "x86_64") -> str:
    """Write a node file; returns its ``test://`` URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(node_xml(memory_mb, cpus, arch))
    return "test://" + str(path.resolve())


def file_of(uri: str) -> Path | None:
    """The node file of a ``test:///abs/path`` URI; None for test:///default and other drivers."""
    if not uri.startswith("test:///") or uri == "test:///default":
        return None
    return Path(uri[len("test://") :])


def restored(uri: str, domains: Iterable[tuple[str, str]], target: Path) -> str:
    """The URI to open: a copy of the node file with ``(xml, state)`` domains added.

    The domains are spliced in as text, not parsed: a restart writes thousands of them,
    and each is XML vws itself wrote (or read back from libvirt)."""
    base = file_of(uri)
    if base is None:
        return uri
    node = etree.fromstring(base.read_bytes(), _PARSER)
    present = {name.text for name in node.iterfind("domain/name")}
    node.append(etree.Comment(_DOMAINS))
    before, after = etree.tostring(node, encoding="unicode").split(f"<!--{_DOMAINS}-->")
    added = (_with_runstate(xml, state) for xml, state in domains if not present or _name(xml) not in present)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w") as written:
        written.write(before)
        written.writelines(added)
        written.write(after)
    partial.replace(target)
    return "test://" + str(target.resolve())


_DOMAINS = "recorded domains"
_NAME = re.compile(r"<name>\s*([^<]+?)\s*</name>")  # the domain's own name comes first


def _name(xml: str) -> str | None:
    found = _NAME.search(xml)
    return found.group(1) if found else None


def _with_runstate(xml: str, state: str) -> str:
    """The domain's XML with ``<test:runstate>`` (the power state the node opens it in) as its last child."""
    if xml.startswith("<?xml"):
        xml = xml[xml.index("?>") + 2 :]
    end = xml.rindex("</domain>")
    runstate = f'<test:runstate xmlns:test="{TEST_NS}">{_RUNSTATE[state]}</test:runstate>'
    return xml[:end] + runstate + xml[end:]

"""GET /status: a read-only page for administrators (nodes, workspaces, leases, recent failures).

Plain server-rendered HTML, no script: every value is escaped, and the response forbids
scripts, framing, caching and referrers (a signed link's query must not travel on). Who
may see it: a caller the TLS handshake proved to be an admin DN (GSI Transport, the
browser presenting the admin's certificate), or the holder of a valid signed link from
``vws-admin status-url`` (see status_links.py). Everyone else gets 403 and a log line.
"""

import html
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vws.clock import Clock, timestamp
from vws.soap.metrics import NodeRoom
from vws.soap.status_links import StatusLinks
from vws.soap.transport import PEER
from vws.workspace.records import Failure, Workspace

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], object]
Page = Callable[[dict, StartResponse], list[bytes]]
MAX_ROWS = 500  # workspaces shown; the rest are counted, so a big pool never makes a huge page
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
]
_STYLE = """
body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
p.who { color: #555; margin: 0; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: left; }
th { background: #eee; } td.n { text-align: right; } table + table { margin-top: .6em; }
.corrupted { background: #fdd; } .running { background: #dfd; } .down { background: #fdd; }
"""


class NodeStatus(NodeRoom, Protocol):
    """A node's room, and whether placement may use it (the pool's NodeLoad)."""

    usable: bool


@dataclass(frozen=True)
class StatusSources:
    """What the page shows, each read when it is requested."""

    workspaces: Callable[[int], Sequence[Workspace]]  # the oldest live ones, at most so many
    live: Callable[[], int]  # how many live in all
    nodes: Callable[[], Iterable[NodeStatus]]
    leases: Callable[[], Mapping[str, tuple[int, int]]]  # per network pool: leased, free
    failures: Callable[[], Sequence[Failure]]  # the latest first


def status_page(sources: StatusSources, links: StatusLinks, admins: frozenset[str], clock: Clock) -> Page:
    """The WSGI page ``/status``."""

    def page(environ: dict, start_response: StartResponse) -> list[bytes]:
        admin, refusal = _admin(environ, links, admins)
        if admin is None:
            log.warning("status page refused to %s: %s", environ.get("REMOTE_ADDR"), refusal)
            body = f"403 Forbidden: the status page is for administrators ({refusal}).\n".encode()
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"), *_HEADERS[1:]])
            return [body]
        start_response("200 OK", list(_HEADERS))
        return [render(sources, admin, clock.now()).encode()]

    return page


def _admin(environ: dict, links: StatusLinks, admins: frozenset[str]) -> tuple[str | None, str]:
    peer = environ.get(PEER)
    if peer is not None and peer.identity in admins:
        return peer.identity, ""
    return links.admin(environ.get("QUERY_STRING", ""))


def render(sources: StatusSources, admin: str, now: datetime) -> str:
    workspaces = sources.workspaces(MAX_ROWS)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>vws status</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>vws status</h1>",
        f'<p class="who">{_e(timestamp(now))} &middot; signed in as {_e(admin)} &middot; read only</p>',
        _nodes(sources.nodes()),
        _workspaces(workspaces, sources.live()),
        _leases(sources.leases(), workspaces),
        _failures(sources.failures()),
        "</body></html>",
    ]
    return "\n".join(parts)


def _nodes(nodes: Iterable[NodeStatus]) -> str:
    rows = [
        _row(
            [node.name, "yes" if node.usable else "no"]
            + [node.used_memory_mb, node.free_memory_mb, node.used_cpus, node.free_cpus],
            "" if node.usable else "down",
        )
        for node in nodes
    ]
    head = ["node", "usable", "memory used (MB)", "memory free (MB)", "CPUs used", "CPUs free"]
    return _section("Nodes", head, rows, "no nodes")


def _workspaces(workspaces: Sequence[Workspace], live: int) -> str:
    rows = [
        _row(
            [
                workspace.id,
                workspace.owner,
                workspace.state.value,
                workspace.node or "-",
                ", ".join(lease.ip for lease in workspace.leases) or "-",
                timestamp(workspace.termination_time),
                workspace.fault or "",
            ],
            workspace.state.value,
        )
        for workspace in workspaces
    ]
    head = ["id", "owner", "state", "node", "addresses", "terminates", "fault"]
    more = live - len(workspaces)
    note = f"<p>{more} more not shown.</p>" if more > 0 else ""
    return _section(f"Workspaces ({live} live)", head, rows, "no live workspaces") + note


def _leases(counts: Mapping[str, tuple[int, int]], workspaces: Sequence[Workspace]) -> str:
    pools = [_row([pool, used, free]) for pool, (used, free) in sorted(counts.items())]
    held = [
        _row([lease.pool, lease.ip, lease.hostname, lease.mac, workspace.id])
        for workspace in workspaces
        for lease in workspace.leases
    ]
    return _section("Leases", ["network pool", "leased", "free"], pools, "no network pools") + _section(
        "", ["pool", "address", "hostname", "MAC", "workspace"], held, "no address leased"
    )


def _failures(failures: Sequence[Failure]) -> str:
    rows = [
        _row([timestamp(f.at), f.workspace_id, f.owner, f.reason, "live" if f.live else "destroyed"], "corrupted")
        for f in failures
    ]
    return _section("Recent failures", ["when", "workspace", "owner", "reason", "now"], rows, "none")


def _section(title: str, head: list[str], rows: list[str], empty: str) -> str:
    heading = f"<h2>{_e(title)}</h2>" if title else ""
    if not rows:
        return f"{heading}<p>{_e(empty)}</p>"
    header = "".join(f"<th>{_e(name)}</th>" for name in head)
    return f"{heading}<table><tr>{header}</tr>{''.join(rows)}</table>"


def _row(cells: list[object], css: str = "") -> str:
    attribute = f' class="{_e(css)}"' if css else ""
    tds = "".join(f'<td class="n">{cell}</td>' if isinstance(cell, int) else f"<td>{_e(cell)}</td>" for cell in cells)
    return f"<tr{attribute}>{tds}</tr>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)

"""``vws-admin``: the operator's tool, one subcommand per job, on the service's state dir.

vws-admin --state-dir /var/lib/vws nodes list
vws-admin --state-dir /var/lib/vws nodes add NAME --uri qemu+ssh://n1/system --memory 7680 --cpus 8 [--networks public]
          [--images local|upload]
vws-admin --state-dir /var/lib/vws nodes update NAME [--memory MB] [--cpus N] [--networks A,B] [--inactive|--active]
          [--images local|upload]
vws-admin --state-dir /var/lib/vws nodes remove NAME
vws-admin --state-dir /var/lib/vws usage [--user DN] [--since T] [--until T] [--csv]
vws-admin --config /etc/vws/vws.conf check [--insecure]
vws-admin --config /etc/vws/vws.conf status-url [--dn DN] [--minutes 15] [--url https://vws.example.org:8443]
vws-admin --state-dir /var/lib/vws ec2-keys create --dn DN | list | revoke ACCESS_KEY_ID

Changes to nodes take effect at once in a running service: placement reads the table.
"""

import argparse
import csv
import socket
import sys
from datetime import datetime, timedelta
from pathlib import Path

from vws import check as checkup
from vws import config as configuration
from vws import state_dir as private
from vws.clock import SystemClock
from vws.ec2.access_keys import AccessKeys, SecretsKey
from vws.errors import VwsError
from vws.pool import nodes as pool_nodes
from vws.security import ca, gridmap
from vws.security.ca import DevCA
from vws.soap.status_links import StatusLinks, link_key
from vws.soap.wsgi import SERVICES_PATH
from vws.store.database import Store
from vws.workspace.accounting import Accounting, UsageLine
from vws.wsrf.lifetime import parse_datetime

COLUMNS = ("owner", "created", "removed", "reserved_minutes", "used_minutes")


def nodes(args: argparse.Namespace, settings: configuration.Config) -> int:
    """List, add, update or remove hypervisor nodes, with what each holds."""
    store = Store(settings.service.state_dir / "vws.sqlite")
    try:
        with store.transaction() as db:
            if args.action == "add":
                pool_nodes.add_node(
                    db,
                    args.name,
                    args.uri,
                    args.memory,
                    args.cpus,
                    args.networks or ("*",),
                    active=not args.inactive,
                    images=args.images,
                )
            elif args.action == "update":
                pool_nodes.update_node(
                    db,
                    args.name,
                    uri=args.uri,
                    memory_mb=args.memory,
                    cpus=args.cpus,
                    networks=args.networks,
                    active=args.active,
                    images=args.images,
                )
            elif args.action == "remove":
                pool_nodes.remove_node(db, args.name)
            listed, held = pool_nodes.list_nodes(db), pool_nodes.usage(db)
    finally:
        store.close()
    _write_table(
        ("node", "uri", "memory_mb", "used_mb", "cpus", "used_cpus", "networks", "state", "images"),
        [_node_row(node, held.get(node.name, pool_nodes.Usage())) for node in listed],
    )
    return 0


def _node_row(node: pool_nodes.Node, held: pool_nodes.Usage) -> tuple:
    state = ("active" if node.active else "inactive") + ("" if node.available else ",unavailable")
    networks = ",".join(node.networks)
    return (node.name, node.uri, node.memory_mb, held.memory_mb, node.cpus, held.cpus, networks, state, node.image_mode)


def ca_init(args: argparse.Namespace, settings: configuration.Config) -> int:
    """A development CA, host and user credentials and the user's grid-mapfile line, in the state dir."""
    dev = DevCA(settings.service.state_dir / "security")
    user_dn = ca.init(dev.root, SystemClock(), hostname=args.hostname)
    known = gridmap.parse(dev.gridmap.read_text()) if dev.gridmap.exists() else {}
    if user_dn not in known:
        with dev.gridmap.open("a") as mapfile:
            mapfile.write(f"{gridmap.quote(user_dn)} {args.account}\n")
    print(f"trust dir:       {dev.trust_dir}\nhost credential: {dev.host_cert}\nuser credential: {dev.user_cert}")
    print(f"grid-mapfile:    {dev.gridmap} ({user_dn} -> {args.account})")
    return 0


def usage(args: argparse.Namespace, settings: configuration.Config) -> int:
    """Accounting records per user in a period: a table, or CSV for spreadsheets."""
    store = Store(settings.service.state_dir / "vws.sqlite")
    try:
        accounting = Accounting(store, SystemClock(), settings.accounting.charge_granularity_minutes)
        accounting.catch_up()
        lines = accounting.report(args.user, args.since, args.until)
    finally:
        store.close()
    rows = [_row(line) for line in lines]
    (_write_csv if args.csv else _write_table)(COLUMNS, rows)
    return 0


def check(args: argparse.Namespace, settings: configuration.Config) -> int:
    """Every problem of the configuration, one a line (exit 1); else a short summary (exit 0)."""
    try:
        settings = settings.with_overrides("service", insecure=args.insecure or None)
        report = checkup.check(settings, SystemClock())
    except configuration.ConfigError as exc:
        report = checkup.Report([str(exc)])
    for line in report.problems or report.summary:
        print(line)
    if report.problems:
        print(f"vws-admin check: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print("vws-admin check: no problems")
    return 0


def status_url(args: argparse.Namespace, settings: configuration.Config) -> int:
    """Print a link to the status page, signed for an admin DN and valid for a few minutes."""
    admins = settings.security.admin_dns
    dn = args.dn or (admins[0] if len(admins) == 1 else None)
    if dn is None:
        print("vws-admin status-url: name the admin with --dn (one of [security] admin_dns)", file=sys.stderr)
        return 2
    links = StatusLinks(link_key(settings.service.state_dir), SystemClock(), frozenset(admins))
    try:
        query = links.mint(dn, timedelta(minutes=args.minutes))
    except ValueError as refused:
        print(f"vws-admin status-url: {refused}", file=sys.stderr)
        return 2
    print(f"{(args.url or _service_root(settings)).rstrip('/')}/status?{query}")
    return 0


def _service_root(settings: configuration.Config) -> str:
    """Where the service answers, as clients reach it: base_url without its services path, else listen."""
    if settings.service.base_url:
        return settings.service.base_url.split(SERVICES_PATH)[0]
    host, _, port = settings.service.listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):
        host = socket.getfqdn()
    return f"{'https' if settings.security.tls else 'http'}://{host}:{port}"


def ec2_keys(args: argparse.Namespace, settings: configuration.Config) -> int:
    """Issue, list or revoke the EC2 door's access keys; a new key's secret is printed once, never again."""
    private.create(settings.service.state_dir)
    store = Store(settings.service.state_dir / "vws.sqlite")
    try:
        keys = AccessKeys(store, SystemClock(), SecretsKey.of(settings.ec2, settings.service.state_dir))
        if args.action == "create":
            issued = keys.create(args.dn)
            print(f"access key id:     {issued.access_key_id}\nsecret access key: {issued.secret}")
            print(f"identity:          {issued.identity}\n(the secret is shown only now: keep it)")
        elif args.action == "revoke":
            keys.revoke(args.access_key_id)
            print(f"revoked {args.access_key_id}")
        else:
            listed = [(key.access_key_id, key.identity, key.created_at, key.revoked_at or "-") for key in keys.list()]
            _write_table(("access_key_id", "identity", "created", "revoked"), listed)
    finally:
        store.close()
    return 0


def _write_csv(header: tuple, rows: list[tuple]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(header)
    writer.writerows(rows)


def _write_table(header: tuple, body: list[tuple]) -> None:
    rows = [header, *(tuple(str(value) for value in row) for row in body)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _row(line: UsageLine) -> tuple:
    return (line.owner, line.created, line.removed, line.reserved_minutes, line.used_minutes)


def _instant(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except VwsError as exc:  # argparse reports a ValueError as a usage error
        raise ValueError(exc.description) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vws-admin", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    top.add_argument("--config", type=Path, help="vws.conf (default: the embedded default)")
    top.add_argument("--state-dir", type=Path, help="the service's state dir (overrides the config)")
    commands = top.add_subparsers(dest="command", required=True)
    node = commands.add_parser("nodes", help="the hypervisor nodes of the pool")
    actions = node.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every node, what it may give and what it holds")
    for name in ("add", "update", "remove"):
        action = actions.add_parser(name, help=f"{name} a node")
        action.add_argument("name")
        if name == "remove":
            continue
        action.add_argument("--uri", required=name == "add", help="libvirt URI, e.g. qemu+ssh://node1/system")
        action.add_argument("--memory", type=int, required=name == "add", metavar="MB", help="memory it may give")
        action.add_argument("--cpus", type=int, required=name == "add", help="CPUs it may give")
        action.add_argument("--networks", type=pool_nodes.parse_networks, help="network pools it reaches (a,b or *)")
        action.add_argument(
            "--images",
            choices=pool_nodes.IMAGE_MODES,
            help="local: it reads images in the state dir; upload: ship them as libvirt volumes "
            "(default: from the URI, upload when it names a remote host)",
        )
        if name == "add":
            action.add_argument("--inactive", action="store_true", help="add it drained: no new workspaces")
        else:
            switch = action.add_mutually_exclusive_group()
            switch.add_argument("--inactive", dest="active", action="store_false", default=None, help="drain it")
            switch.add_argument("--active", dest="active", action="store_true", help="place workspaces on it again")
    node.set_defaults(run=nodes)
    authority = commands.add_parser("ca", help="a development certificate authority")
    init = authority.add_subparsers(dest="action", required=True).add_parser(
        "init", help="make (or keep) the CA, host and user credentials and grid-mapfile in <state-dir>/security"
    )
    init.add_argument("--hostname", help="for the host certificate (default: this host's FQDN)")
    init.add_argument("--account", default="vwsuser", help="local account in the grid-mapfile line")
    authority.set_defaults(run=ca_init)
    report = commands.add_parser("usage", help="accounting: workspaces and minutes per user")
    report.add_argument("--user", metavar="DN", help="only this grid identity")
    report.add_argument("--since", type=_instant, metavar="TIME", help="records at or after (xsd:dateTime)")
    report.add_argument("--until", type=_instant, metavar="TIME", help="records before (xsd:dateTime)")
    report.add_argument("--csv", action="store_true", help="comma-separated, with a header line")
    report.set_defaults(run=usage)
    inspect = commands.add_parser("check", help="validate the configuration: every problem, one a line")
    inspect.add_argument("--insecure", action="store_true", help="check it as vws-service --insecure runs it")
    inspect.set_defaults(run=check)
    link = commands.add_parser("status-url", help="a short-lived signed link to the status page, for a browser")
    link.add_argument("--dn", help="the admin it is for (default: the only one in [security] admin_dns)")
    link.add_argument("--minutes", type=int, default=15, help="how long it works (at most 60; default 15)")
    link.add_argument("--url", help="the service's address as your browser reaches it (default: from the config)")
    link.set_defaults(run=status_url)
    ec2 = commands.add_parser("ec2-keys", help="access keys for the EC2 door (boto3, the aws CLI)")
    ec2_actions = ec2.add_subparsers(dest="action", required=True)
    ec2_actions.add_parser("create", help="a new key bound to a grid identity").add_argument(
        "--dn", required=True, help="the grid identity (as in the grid-mapfile) the key acts as"
    )
    ec2_actions.add_parser("list", help="every key: its identity, when issued and revoked (no secrets)")
    ec2_actions.add_parser("revoke", help="refuse the key from now on").add_argument("access_key_id")
    ec2.set_defaults(run=ec2_keys)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    private.keep_private()
    try:
        settings = configuration.load(args.config).with_overrides("service", state_dir=args.state_dir)
        return args.run(args, settings)
    except VwsError as exc:  # a configuration it cannot use is a usage error (2); a refused change is 1
        print(f"vws-admin: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, configuration.ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())

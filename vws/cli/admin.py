"""``vws-admin``: the operator's tool, one subcommand per job, reading the service's state dir.

vws-admin --state-dir /var/lib/vws usage [--user DN] [--since T] [--until T] [--csv]
"""

import argparse
import csv
import sys
from datetime import datetime
from pathlib import Path

from vws import config as configuration
from vws.clock import SystemClock
from vws.errors import VwsError
from vws.store.database import Store
from vws.workspace.accounting import Accounting, UsageLine
from vws.wsrf.lifetime import parse_datetime

COLUMNS = ("owner", "created", "removed", "reserved_minutes", "used_minutes")


def usage(args: argparse.Namespace, settings: configuration.Config) -> int:
    """Accounting records per user in a period: a table, or CSV for spreadsheets."""
    store = Store(settings.service.state_dir / "vws.sqlite")
    try:
        accounting = Accounting(store, SystemClock(), settings.accounting.charge_granularity_minutes)
        accounting.catch_up()
        lines = accounting.report(args.user, args.since, args.until)
    finally:
        store.close()
    (_write_csv if args.csv else _write_table)(lines)
    return 0


def _write_csv(lines: list[UsageLine]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(COLUMNS)
    writer.writerows(_row(line) for line in lines)


def _write_table(lines: list[UsageLine]) -> None:
    rows = [COLUMNS, *(tuple(str(value) for value in _row(line)) for line in lines)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
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
    report = commands.add_parser("usage", help="accounting: workspaces and minutes per user")
    report.add_argument("--user", metavar="DN", help="only this grid identity")
    report.add_argument("--since", type=_instant, metavar="TIME", help="records at or after (xsd:dateTime)")
    report.add_argument("--until", type=_instant, metavar="TIME", help="records before (xsd:dateTime)")
    report.add_argument("--csv", action="store_true", help="comma-separated, with a header line")
    report.set_defaults(run=usage)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = configuration.load(args.config).with_overrides("service", state_dir=args.state_dir)
    except configuration.ConfigError as exc:
        print(f"vws-admin: {exc}", file=sys.stderr)
        return 2
    return args.run(args, settings)


if __name__ == "__main__":
    sys.exit(main())

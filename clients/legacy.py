"""``workspace``: the GT4/Nimbus workspace client's command line, run by vws-client.

Scripts written for the GT4 client keep working unchanged:

    workspace --deploy --file ws.epr --metadata m.xml --deploy-duration 30 --deploy-mem 256 \\
        -s https://host:8443/wsrf/services/WorkspaceFactoryService --poll-delay 2000
    workspace --shutdown-save -e ws.epr

The command line is translated into vws-client's, which does the work; these are
the GT4 client's ways, where they are not vws-client's own:

- waiting: without ``--exit-state`` the client watches until the workspace is gone
  (destroyed, or its lease over); ``--poll-delay`` polls instead of subscribing;
  ``--nosubscriptions`` exits once the request is made; there is no time limit.
  A deploy that opens or joins an ensemble without closing it does not wait.
- unless ``--no-auto-destroy``, a workspace that ends up Corrupted or Cancelled is
  destroyed, and so is one whose disk ``--shutdown-save`` has saved.
- ``-e`` (or ``--e``) names the factory's EPR for ``--deploy`` and ``--factoryrp``,
  and the workspace's (group's, ensemble's) otherwise; ``--file`` is where
  ``--deploy`` writes the new EPR, a group's members to ``<file>-<key>.epr``.
- contexts: ``--ctx-create`` (or ``--ctx-create-injectable``) writes the new context's
  EPR to ``--file``; ``--ctx-data`` injects the file ``--file`` as the data ``--dataname``;
  ``--ctx-print-status`` and ``--ctx-monitor`` (until every member exited) report each
  member. The 2008/12 broker has no lock: ``lockContext`` travels with a create.
- exit status: 0 success; 1 bad command line or input file; 2 the service refused,
  a workspace did not reach the exit state, or a context member failed.
"""

import argparse
import sys
from pathlib import Path

from clients import monitor, workspace
from clients.errors import ClientError
from clients.workspace import read_epr
from vws.errors import VwsError

MODES = (
    ("deploy", "deploy a workspace, or a group with --numnodes"),
    ("destroy", "destroy a workspace, group or ensemble"),
    ("factoryrp", "print what the factory advertises"),
    ("rpquery", "print a workspace's resource properties"),
    ("pause", "pause a workspace or group"),
    ("reboot", "reboot a workspace or group"),
    ("shutdown", "shut a workspace or group down"),
    ("shutdown-save", "shut down and save the disk back (unpropagate)"),
    ("start", "start a propagated or paused workspace or group"),
    ("subscribe", "watch a workspace's state changes"),
    ("ens-done", "close an ensemble: its workspaces start together"),
    ("ctx-create", "create a context at the broker; write its EPR to --file"),
    ("ctx-create-injectable", "the same, for a context that waits for --ctx-data and --ctx-no-more-injections"),
    ("ctx-data", "inject the data in --file, named --dataname, into a context"),
    ("ctx-no-more-injections", "a context takes no more data"),
    ("ctx-print-status", "print a context's state and each member's"),
    ("ctx-monitor", "wait until every member of a context exited"),
)
# The GT4 modes vws-client names otherwise.
CONTEXT_ACTIONS = {
    "ctx-create": "context-create",
    "ctx-create-injectable": "context-create",
    "ctx-data": "context-inject",
    "ctx-no-more-injections": "context-no-more-injections",
    "ctx-print-status": "context-status",
    "ctx-monitor": "context-status",
}
INITIAL_STATES = ("Unpropagated", "Propagated", "Running", "Paused")
# vws-client's exit status -> the GT4 client's (0 success, 1 command line, 2 application).
EXIT_STATUS = {
    0: 0,
    workspace.EXIT_FAULT: 2,
    workspace.EXIT_USAGE: 1,
    monitor.EXIT_STATE: 2,
    workspace.EXIT_TIMEOUT: 2,
    workspace.EXIT_INTERRUPTED: workspace.EXIT_INTERRUPTED,
}


class UsageError(ClientError):
    """A command line the GT4 client would refuse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="workspace",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    modes = top.add_argument_group("action (exactly one)").add_mutually_exclusive_group(required=True)
    for name, text in MODES:
        modes.add_argument(f"--{name}", dest="mode", action="store_const", const=name, help=text)

    common = top.add_argument_group("target and security")
    common.add_argument("-s", "--service", metavar="URL", help="the factory service URL")
    common.add_argument("-e", "--e", "--eprFile", dest="eprFile", type=Path, metavar="FILE", help="an EPR file")
    common.add_argument("-a", "--anonymous", action="store_true", help="send unsigned messages")
    common.add_argument(
        "-z", "--authorization", metavar="self|host|none|DN", help="a DN: accept replies signed by it only"
    )

    deploy = top.add_argument_group("deploy")
    deploy.add_argument("-w", "--metadata", type=Path, metavar="FILE", help="the workspace metadata (required)")
    deploy.add_argument("-r", "--request", type=Path, metavar="FILE", help="the deployment request")
    deploy.add_argument("--deploy-duration", type=_positive, metavar="MIN", help="running time (overrides -r)")
    deploy.add_argument("--deploy-mem", type=_positive, metavar="MB", help="memory (overrides -r)")
    deploy.add_argument("--deploy-state", type=_initial_state, metavar="STATE", help="initial state (overrides -r)")
    deploy.add_argument("-n", "--numnodes", type=_positive, metavar="N", help="a group of N workspaces")
    deploy.add_argument("--trash-at-shutdown", action="store_true", help="destroy when the running time is over")
    deploy.add_argument("--save-target", metavar="URL", help="where shutdown-save saves the disk")
    deploy.add_argument("--file", type=Path, metavar="FILE", help="write the EPR here (a group's: FILE-<key>.epr)")
    deploy.add_argument("--groupfile", type=Path, metavar="FILE", help="write the group's EPR here")
    deploy.add_argument("--new-ensemble", type=Path, metavar="FILE", help="start an ensemble; write its EPR here")
    deploy.add_argument("--join-ensemble", type=Path, metavar="FILE", help="join the ensemble of this EPR file")
    deploy.add_argument("--last-in-ensemble", action="store_true", help="close the joined ensemble after this")

    contexts = top.add_argument_group("contexts")
    contexts.add_argument("--dataname", metavar="NAME", help="the name of the data --ctx-data injects")

    waiting = top.add_argument_group("waiting (deploy, subscribe, shutdown-save)")
    waiting.add_argument("--exit-state", type=monitor.state_name, metavar="STATE", help="exit once it is reached")
    waiting.add_argument("--poll-delay", type=_positive, metavar="MS", help="poll at this interval (no listener)")
    waiting.add_argument("--nosubscriptions", action="store_true", help="do not wait at all")
    waiting.add_argument("--no-auto-destroy", action="store_true", help="leave Corrupted and saved workspaces be")
    waiting.add_argument("--override-listener-address", metavar="HOST[:PORT]", help="the listener's address (NAT)")
    return top


def translate(args: argparse.Namespace) -> list[str]:
    """The vws-client command line that does what the GT4 one asks."""
    _check(args)
    service = _service(args)
    argv = ["-s", service] if service else []
    argv += ["--anonymous"] if args.anonymous else []
    if args.authorization and args.authorization not in ("self", "host", "none"):
        argv += ["--factory-id", args.authorization]
    if args.mode in CONTEXT_ACTIONS:
        return argv + [CONTEXT_ACTIONS[args.mode], *_context_options(args)]
    argv.append(args.mode)
    if args.mode == "deploy":
        return argv + _deploy_options(args) + _waiting_options(args)
    if args.mode != "factoryrp":
        argv += ["-e", str(args.eprFile)]
    if args.mode == "shutdown-save":
        argv += ["--save-target", args.save_target] if args.save_target else []
        return argv + _waiting_options(args)
    if args.mode == "subscribe":
        return argv + _waiting_options(args)
    return argv


def _check(args: argparse.Namespace) -> None:
    """What the GT4 client refuses before sending anything."""
    if args.mode == "deploy":
        if args.metadata is None:
            raise UsageError("--deploy requires a metadata file (--metadata)")
        if args.request is None and not (args.deploy_duration and args.deploy_mem):
            raise UsageError("--deploy without --request needs both --deploy-duration and --deploy-mem")
        if args.new_ensemble and (args.join_ensemble or args.last_in_ensemble):
            raise UsageError("--new-ensemble goes with neither --join-ensemble nor --last-in-ensemble")
        if args.last_in_ensemble and not args.join_ensemble:
            raise UsageError("--last-in-ensemble needs --join-ensemble")
        if args.new_ensemble and args.new_ensemble.exists():
            raise UsageError(f"--new-ensemble: {args.new_ensemble} exists already")
    elif args.mode.startswith("ctx-create"):
        if args.file is None:
            raise UsageError(f"--{args.mode} requires the file to write the context's EPR to (--file)")
    elif args.mode != "factoryrp" and args.eprFile is None:
        raise UsageError(f"--{args.mode} requires an EPR file (-e)")
    if args.mode == "ctx-data" and (args.file is None or args.dataname is None):
        raise UsageError("--ctx-data requires the data's file (--file) and name (--dataname)")
    if args.mode == "shutdown-save" and args.exit_state not in (None, "TransportReady"):
        raise UsageError("the exit state of --shutdown-save can only be TransportReady")


def _service(args: argparse.Namespace) -> str | None:
    """-s; for --deploy and --factoryrp, -e may name the factory instead."""
    if args.service or args.mode not in ("deploy", "factoryrp") or args.eprFile is None:
        return args.service
    return read_epr(args.eprFile).address


def _deploy_options(args: argparse.Namespace) -> list[str]:
    given = {
        "--metadata": args.metadata,
        "--request": args.request,
        "--file": args.file,
        "--groupfile": args.groupfile,
        "--deploy-duration": args.deploy_duration,
        "--deploy-mem": args.deploy_mem,
        "--deploy-state": args.deploy_state,
        "--numnodes": args.numnodes,
        "--save-target": args.save_target,
        "--join-ensemble": args.join_ensemble,
        "--ensfile": args.new_ensemble,
    }
    argv = [text for flag, value in given.items() if value is not None for text in (flag, str(value))]
    switches = {"--new-ensemble": args.new_ensemble, "--last-in-ensemble": args.last_in_ensemble}
    switches["--trash-at-shutdown"] = args.trash_at_shutdown
    return argv + [flag for flag, on in switches.items() if on]


def _context_options(args: argparse.Namespace) -> list[str]:
    if args.mode.startswith("ctx-create"):
        return ["--file", str(args.file)] + (["--expect-injections"] if args.mode.endswith("injectable") else [])
    argv = ["-e", str(args.eprFile)]
    if args.mode == "ctx-data":
        return argv + ["--file", f"{args.dataname}={args.file}"]
    if args.mode == "ctx-monitor":
        return argv + ["--wait", "--poll-delay", str(args.poll_delay or 2000)]
    return argv


def _waiting_options(args: argparse.Namespace) -> list[str]:
    if args.nosubscriptions:
        return ["--no-wait"]
    target = args.exit_state or (monitor.DESTROYED if args.mode != "shutdown-save" else "TransportReady")
    argv = ["--exit-state", target, "--timeout", "0"]
    argv += [] if args.no_auto_destroy else ["--auto-destroy"]
    if args.poll_delay:
        argv += ["--poll", "--poll-delay", str(args.poll_delay)]
    if args.override_listener_address:
        argv += ["--listener-address", args.override_listener_address]
    return argv


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _initial_state(text: str) -> str:
    state = monitor.state_name(text)
    if state not in INITIAL_STATES:
        raise argparse.ArgumentTypeError(f"{text!r} is not an initial state (one of {', '.join(INITIAL_STATES)})")
    return state


def main(argv: list[str] | None = None) -> int:
    try:
        translated = translate(parser().parse_args(argv))
    except VwsError as exc:
        print(f"workspace: {exc}", file=sys.stderr)
        return 1
    return EXIT_STATUS.get(workspace.main(translated, prog="workspace"), 2)


if __name__ == "__main__":
    sys.exit(main())

"""``vws-service``: serve the workspace port types until SIGTERM or SIGINT."""

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from vws import affinity
from vws import config as configuration
from vws import state_dir as private
from vws.cli import allocator, log_output
from vws.config import LoggingConfig
from vws.errors import VwsError
from vws.service import Service


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vws-service", description=__doc__)
    parser.add_argument("--config", type=Path, help="vws.conf (default: the embedded default)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to bind; port 0 picks a free one")
    parser.add_argument("--ec2-listen", metavar="HOST:PORT", help="open the EC2 Query API door there ([ec2] listen)")
    parser.add_argument("--state-dir", type=Path, help="where the SQLite file, images and node files live")
    parser.add_argument(
        "--insecure", action="store_true", default=None, help="accept anonymous, unsigned messages (tests, demos)"
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="overrides [logging] level (INFO: a line per request, state change and libvirt action)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    allocator.cap_arenas()  # before any thread allocates
    args = parse_args(argv)
    log_output.configure(LoggingConfig(), args.log_level)  # until the configuration says otherwise
    private.keep_private()
    config = None
    try:
        config = configuration.load(args.config).with_overrides(
            "service", listen=args.listen, state_dir=args.state_dir, insecure=args.insecure
        )
        config = config.with_overrides("ec2", listen=args.ec2_listen)
        log_output.configure(config.logging, args.log_level)
        affinity.pin(config.service.cpu)  # before the service starts a thread: they all inherit it
        return _serve(Service(config), config)
    except VwsError as exc:
        print(f"vws-service: {config.locate(exc) if config else exc}", file=sys.stderr)
        return 2


def _serve(service: Service, config: configuration.Config) -> int:
    """Run until SIGTERM or SIGINT, then stop within ``[service] stop_seconds``."""
    stop = threading.Event()
    allocator.trim_every(allocator.TRIM_SECONDS, stop)
    stop_signal = _stop_signals()
    url = service.start()
    exposure = config.service.insecure_exposure()
    if exposure:
        print(f"vws-service: warning: {exposure}", file=sys.stderr, flush=True)
    print(f"vws-service listening on {url}", flush=True)
    if service.ec2_url:
        print(f"vws-service EC2 endpoint on {service.ec2_url}", flush=True)
    os.read(stop_signal, 1)  # returns at once for a signal that came while the service started
    stop.set()
    _exit_after(config.service.stop_seconds)
    service.stop()
    return 0


def _stop_signals() -> int:
    """A pipe that SIGTERM or SIGINT writes a byte to. Their Python handlers do nothing: a handler
    that set an Event could run while this thread held the Event's own lock, inside its wait,
    and deadlock the stop; the interpreter writes the signal to the pipe from C instead."""
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    return reader


def _exit_after(seconds: int) -> None:
    """End the process ``seconds`` from now, even if a request or deployment is stuck in long work.

    Every state change is a committed transaction, so exiting cuts off only what was in
    flight, as a kill would; the next start recovers from the store.
    """

    def exit_now() -> None:
        logging.getLogger("vws-service").error("work in flight did not stop within %s s; exiting anyway", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


if __name__ == "__main__":
    sys.exit(main())

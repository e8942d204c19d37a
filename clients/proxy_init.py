"""vws-proxy-init: make an RFC 3820 proxy credential, as grid-proxy-init does.

    vws-proxy-init [-cert FILE] [-key FILE] [-out FILE] [-hours H | -valid H:M] [-limited] [-path-length N] [-bits B]

Defaults: ``X509_USER_CERT`` (else ~/.globus/usercert.pem), ``X509_USER_KEY`` (else
~/.globus/userkey.pem), ``X509_USER_PROXY`` (else /tmp/x509up_u<uid>). The output
holds the proxy certificate, its unencrypted key and the issuing chain, mode 0600.
"""

import argparse
import getpass
import os
import sys
from datetime import timedelta
from pathlib import Path

from clients.errors import ClientError
from vws.clock import SystemClock
from vws.errors import VwsError
from vws.security.credentials import Credential
from vws.security.proxy import MINIMUM_KEY_BITS, create_proxy

EPILOG = """An unencrypted user key is enough. An encrypted one is unlocked with a pass phrase
asked on the terminal, or read from standard input with -pwstdin. Unlike grid-proxy-init,
-path-length 0 is written as a real constraint (no proxy may be made from this one)."""


def default_proxy_path() -> Path:
    return Path(os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}")


def _user_files() -> tuple[Path, Path]:
    globus = Path.home() / ".globus"
    cert = Path(os.environ.get("X509_USER_CERT") or globus / "usercert.pem")
    key = Path(os.environ.get("X509_USER_KEY") or globus / "userkey.pem")
    return cert, key


def _hours_minutes(text: str) -> timedelta:
    hours, sep, minutes = text.partition(":")
    try:
        return timedelta(hours=int(hours), minutes=int(minutes) if sep else 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H:M, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    cert, key = _user_files()
    p = argparse.ArgumentParser(
        prog="vws-proxy-init", description="Create an RFC 3820 proxy certificate.", epilog=EPILOG, add_help=False
    )
    p.add_argument("-h", "-help", "-usage", "--help", action="help", help="show this help and exit")
    p.add_argument("-cert", type=Path, default=cert, help=f"user certificate (default {cert})")
    p.add_argument("-key", type=Path, default=key, help=f"user key, unencrypted is enough (default {key})")
    p.add_argument("-out", type=Path, default=None, help=f"proxy file (default {default_proxy_path()})")
    lifetime = p.add_mutually_exclusive_group()
    lifetime.add_argument("-hours", type=float, default=None, help="lifetime in hours (default 12)")
    lifetime.add_argument("-valid", type=_hours_minutes, default=None, metavar="H:M", help="lifetime as H:M")
    p.add_argument("-limited", action="store_true", help="create a limited proxy")
    p.add_argument("-path-length", dest="path_length", type=int, metavar="N", help="allow at most N proxies beneath it")
    p.add_argument("-bits", type=int, default=2048, help=f"key size, at least {MINIMUM_KEY_BITS} (default 2048)")
    p.add_argument("-pwstdin", action="store_true", help="read the key's pass phrase from standard input")
    p.add_argument("-q", dest="quiet", action="store_true", help="print nothing on success")
    return p


def _lifetime(args: argparse.Namespace) -> timedelta:
    if args.valid is not None:
        return args.valid
    return timedelta(hours=12 if args.hours is None else args.hours)


def _load_user(cert: Path, key: Path, pwstdin: bool) -> Credential:
    try:
        return _unlock_user(cert, key, pwstdin)
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot load the user credential: {exc}") from None


def _unlock_user(cert: Path, key: Path, pwstdin: bool) -> Credential:
    try:
        return Credential.load(cert, key)
    except TypeError:  # the key is encrypted and no pass phrase was given
        pass
    prompt = f"Enter GRID pass phrase for {cert}: "
    phrase = sys.stdin.readline().rstrip("\n") if pwstdin else getpass.getpass(prompt)
    try:
        return Credential.load(cert, key, phrase.encode())
    except ValueError:
        raise ClientError("wrong pass phrase") from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    lifetime = _lifetime(args)
    if lifetime <= timedelta(0):
        parser().error("the lifetime must be positive")
    if args.path_length is not None and args.path_length < 0:
        parser().error("-path-length must be >= 0")
    if args.bits < MINIMUM_KEY_BITS:
        print(
            f"vws-proxy-init: -bits {args.bits}: keys shorter than {MINIMUM_KEY_BITS} bits are refused", file=sys.stderr
        )
        return 2
    try:
        return _create(args, lifetime)
    except VwsError as exc:
        print(f"vws-proxy-init: {exc}", file=sys.stderr)
        return 1


def _create(args: argparse.Namespace, lifetime: timedelta) -> int:
    user = _load_user(args.cert, args.key, args.pwstdin)
    if not args.quiet:
        print(f"Your identity: {user.subject}")
        print("Creating proxy ...", end=" ", flush=True)
    proxy = create_proxy(
        user, SystemClock(), lifetime=lifetime, limited=args.limited, path_length=args.path_length, bits=args.bits
    )
    proxy.write(args.out or default_proxy_path())
    if not args.quiet:
        until = proxy.certificate.not_valid_after_utc.astimezone()  # local time, as grid-proxy-init prints it
        print("Done")
        print(f"Your proxy is valid until: {until:%a %b %d %H:%M:%S %Y}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

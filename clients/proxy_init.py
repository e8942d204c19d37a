"""vws-proxy-init: make an RFC 3820 proxy credential, as grid-proxy-init does.

    vws-proxy-init [-cert FILE] [-key FILE] [-out FILE] [-hours H] [-limited] [-path-length N] [-bits B]

Defaults: ``X509_USER_CERT`` (else ~/.globus/usercert.pem), ``X509_USER_KEY`` (else
~/.globus/userkey.pem), ``X509_USER_PROXY`` (else /tmp/x509up_u<uid>). The output
holds the proxy certificate, its unencrypted key and the issuing chain, mode 0600.
An encrypted user key is unlocked with a passphrase from the terminal, or from
standard input with ``-pwstdin``.
"""

import argparse
import getpass
import os
import sys
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vws.clock import SystemClock
from vws.security.credentials import Credential
from vws.security.proxy import create_proxy


def default_proxy_path() -> Path:
    return Path(os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}")


def _defaults() -> tuple[Path, Path]:
    globus = Path.home() / ".globus"
    cert = Path(os.environ.get("X509_USER_CERT") or globus / "usercert.pem")
    key = Path(os.environ.get("X509_USER_KEY") or globus / "userkey.pem")
    return cert, key


def parser() -> argparse.ArgumentParser:
    cert, key = _defaults()
    p = argparse.ArgumentParser(prog="vws-proxy-init", description="Create an RFC 3820 proxy certificate.")
    p.add_argument("-cert", type=Path, default=cert, help=f"user certificate (default {cert})")
    p.add_argument("-key", type=Path, default=key, help=f"user key (default {key})")
    p.add_argument("-out", type=Path, default=None, help=f"proxy file (default {default_proxy_path()})")
    p.add_argument("-hours", type=float, default=12.0, help="lifetime in hours (default 12)")
    p.add_argument("-limited", action="store_true", help="create a limited proxy")
    p.add_argument(
        "-path-length",
        dest="path_length",
        type=int,
        default=None,
        help="allow at most N further proxies beneath this one",
    )
    p.add_argument("-bits", type=int, default=2048, help="key size (default 2048)")
    p.add_argument("-pwstdin", action="store_true", help="read the key passphrase from standard input")
    p.add_argument("-q", dest="quiet", action="store_true", help="print nothing on success")
    return p


def _load_user(cert: Path, key: Path, pwstdin: bool) -> Credential:
    cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    chain = tuple(x509.load_pem_x509_certificates(cert_pem))
    try:
        private = serialization.load_pem_private_key(key_pem, None)
    except TypeError:  # encrypted: ask for the passphrase
        phrase = (
            sys.stdin.readline().rstrip("\n")
            if pwstdin
            else getpass.getpass(f"Enter GRID pass phrase for {chain[0].subject.rfc4514_string()}: ")
        )
        try:
            private = serialization.load_pem_private_key(key_pem, phrase.encode())
        except ValueError:
            raise SystemExit("vws-proxy-init: wrong pass phrase") from None
    return Credential(private, chain)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.hours <= 0:
        parser().error("-hours must be positive")
    if args.path_length is not None and args.path_length < 0:
        parser().error("-path-length must be >= 0")
    try:
        user = _load_user(args.cert, args.key, args.pwstdin)
    except FileNotFoundError as exc:
        print(f"vws-proxy-init: cannot read {exc.filename}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"vws-proxy-init: {exc}", file=sys.stderr)
        return 1
    clock = SystemClock()
    proxy = create_proxy(
        user,
        clock,
        lifetime=timedelta(hours=args.hours),
        limited=args.limited,
        path_length=args.path_length,
        bits=args.bits,
    )
    out = args.out or default_proxy_path()
    proxy.write(out)
    if not args.quiet:
        until = proxy.certificate.not_valid_after_utc
        kind = "limited " if args.limited else ""
        print(f"Your {kind}proxy is valid until: {until:%a %b %d %H:%M:%S %Y} UTC")
        print(f"Identity: {user.subject}")
        print(f"Proxy file: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

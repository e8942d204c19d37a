"""Helper processes that make the service's RSA signatures on the CPUs its threads leave free.

An RSA-2048 signature costs about 0.7 ms, a sixth of what a signed request costs the service,
and the service's threads all share one CPU (``vws.affinity``). ``KeyHolder`` starts
``python -m vws.security.keyholder`` helpers on the other CPUs, each with a copy of the key;
a worker that signs writes to an idle helper's pipe and waits, which costs the service's CPU
some microseconds instead. Should a helper die, its share is signed in the service itself.

The key reaches the helper over its stdin, never on its command line or in a file. Both
ways, a message is a 4-byte big-endian length and that many bytes: first the key (PKCS#8
DER), answered empty once the helper is on its CPUs and holds it; then each request (a hash
name, NUL, the data), answered with the signature.
"""

import contextlib
import logging
import os
import queue
import signal
import struct
import subprocess
import sys
from collections.abc import Iterable
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
# A signature's round trip takes about three times its CPU time on a busy machine (the helper
# and then the waiting worker must each be scheduled again): four in flight keep up with what one
# service's threads can ask for, on any number of CPUs. (bench_load, signed: one helper 0.92x of two, four 1.04x.)
_HELPERS = 4
_HASHES = {algorithm.name: algorithm for algorithm in (hashes.SHA1, hashes.SHA256, hashes.SHA384, hashes.SHA512)}


class KeyHolder:
    """Signs with ``key`` (RSA PKCS#1 v1.5) in helper processes pinned to ``cpus``."""

    def __init__(self, key: rsa.RSAPrivateKey, cpus: Iterable[int]) -> None:
        self._key = key
        cpus = sorted(cpus)
        encoding, form = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8
        der = key.private_bytes(encoding, form, serialization.NoEncryption())
        # Each slot is an idle helper, or None once its helper is gone: that signature is made here.
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes] | None] = queue.SimpleQueue()
        self._helpers = [_spawn(cpus) for _ in range(_HELPERS)]  # they start side by side
        for helper in self._helpers:  # each answers once it is on its CPUs and holds the key
            self._idle.put(helper if _exchange(helper, der) is not None else None)

    def sign(self, data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        helper = self._idle.get()
        signature = None
        try:
            if helper is not None:
                signature = _exchange(helper, algorithm.name.encode() + b"\0" + data)
        finally:
            self._idle.put(helper if signature is not None else None)
        return signature or self._key.sign(data, padding.PKCS1v15(), algorithm)

    def close(self) -> None:
        for helper in self._helpers:
            _stop(helper)


def _spawn(cpus: list[int]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", __name__, *map(str, cpus)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _exchange(helper: subprocess.Popen[bytes], message: bytes) -> bytes | None:
    """Send ``message``; its answer, or None when the helper is gone."""
    try:
        _send(helper.stdin, message)  # type: ignore[arg-type]
        return _receive(helper.stdout)  # type: ignore[arg-type]
    except (OSError, EOFError):
        log.error("signing helper %d is gone: its share of signatures is made in the service", helper.pid)
        _stop(helper, kill=True)
        return None


def _stop(helper: subprocess.Popen[bytes], kill: bool = False) -> None:
    """End ``helper`` (at once when ``kill``, else at the end of its input, when it exits) and reap it."""
    if kill:
        helper.kill()
    with contextlib.suppress(OSError):  # a dead helper's pipe refuses what is still buffered for it
        helper.stdin.close()  # type: ignore[union-attr]
    helper.wait()
    helper.stdout.close()  # type: ignore[union-attr]


def _send(stream: BinaryIO, message: bytes) -> None:
    stream.write(_LENGTH.pack(len(message)) + message)
    stream.flush()


def _receive(stream: BinaryIO) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (length,) = _LENGTH.unpack(head)
    message = stream.read(length)
    if len(message) < length:
        raise EOFError
    return message


def main(cpus: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the service's to handle: it closes our input
    if cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus})
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    try:
        key = serialization.load_der_private_key(_receive(requests), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        _send(answers, b"")  # ready
        while True:
            name, _, data = _receive(requests).partition(b"\0")
            _send(answers, key.sign(data, padding.PKCS1v15(), _HASHES[name.decode()]()))
    except EOFError:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The signing helpers: RSA signatures made in processes of their own, on the CPUs given them,
and made in the service itself once a helper is gone."""

import logging
import os
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.processes import signing_helpers
from vws.security.keyholder import KeyHolder

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def helpers() -> list[int]:
    return signing_helpers(os.getpid())


def verifies(signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> bool:
    KEY.public_key().verify(signature, data, padding.PKCS1v15(), algorithm)  # raises when it does not
    return True


@pytest.fixture
def holder():
    opened = KeyHolder(KEY, {min(os.sched_getaffinity(0))})
    yield opened
    opened.close()


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA1(), hashes.SHA512()])
def test_the_helpers_sign_with_the_key_on_the_cpus_given(holder, algorithm):
    data = b"<ds:SignedInfo>" + os.urandom(64) + b"</ds:SignedInfo>"
    assert verifies(holder.sign(data, algorithm), data, algorithm)
    assert helpers() and {frozenset(os.sched_getaffinity(pid)) for pid in helpers()} == {
        frozenset({min(os.sched_getaffinity(0))})
    }


def test_a_helper_killed_costs_no_signature(holder, caplog):
    killed = helpers()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.ERROR, logger="vws.security.keyholder"):
        for n in range(8):
            data = b"message %d" % n
            assert verifies(holder.sign(data, hashes.SHA256()), data, hashes.SHA256())
    assert "signing helper" in caplog.text and "is gone" in caplog.text
    assert not any(Path(f"/proc/{pid}").exists() for pid in killed)  # reaped, not left as zombies


def test_closing_ends_every_helper():
    opened = KeyHolder(KEY, os.sched_getaffinity(0))
    assert len(helpers()) >= 1
    opened.close()
    assert helpers() == []


def test_helpers_that_cannot_start_cost_no_signature(caplog):
    opened = KeyHolder(KEY, {4096})  # a CPU no machine here has: each helper fails as it starts
    try:
        with caplog.at_level(logging.ERROR, logger="vws.security.keyholder"):
            data = b"signed here instead"
            assert verifies(opened.sign(data, hashes.SHA256()), data, hashes.SHA256())
    finally:
        opened.close()
    assert helpers() == []

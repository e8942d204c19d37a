"""The command-line edges: what vws-service and vws-proxy-init say when asked for something unwise."""

import subprocess
import sys
from pathlib import Path

import pytest

from vws.config import ServiceConfig

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "listen, beyond",
    [
        ("127.0.0.1:8443", False),
        ("127.0.0.2:0", False),
        ("localhost:0", False),
        ("[::1]:8443", False),
        ("0.0.0.0:8443", True),
        (":8443", True),
        ("[::]:8443", True),
        ("192.0.2.7:8443", True),
    ],
)
def test_what_reaches_past_loopback(listen, beyond):
    assert ServiceConfig(listen=listen).listens_beyond_loopback() is beyond


def serve_briefly(tmp_path: Path, listen: str) -> str:
    """What vws-service --insecure says on stderr from start until it listens."""
    argv = [BIN / "vws-service", "--listen", listen, "--state-dir", tmp_path / "state", "--insecure"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("vws-service listening on http://")
    finally:
        process.terminate()
    return process.communicate(timeout=60)[1]


def test_insecure_beyond_loopback_is_warned_about(tmp_path):
    warning = serve_briefly(tmp_path, "0.0.0.0:0")
    assert warning == (
        "vws-service: warning: insecure accepts anonymous, unsigned requests from anyone who reaches 0.0.0.0:0: "
        "listen on 127.0.0.1 unless this network is yours alone\n"
    )


def test_insecure_on_loopback_is_not(tmp_path):
    assert serve_briefly(tmp_path, "127.0.0.1:0") == ""


def test_vws_proxy_init_refuses_a_short_key_in_one_line(tmp_path):
    argv = [BIN / "vws-proxy-init", "-bits", "512", "-out", tmp_path / "x509up"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "vws-proxy-init: -bits 512: keys shorter than 2048 bits are refused\n"
    assert not (tmp_path / "x509up").exists()

"""Bring up the system libvirtd (monolithic, no systemd) so tests can use ``qemu:///system``.

Idempotent: daemons that already answer are used as they are, never restarted. When one is
missing, the directories, the ``libvirt-qemu`` account and the qemu.conf settings it needs are
put in place (settings already in qemu.conf win), then ``virtlogd -d`` and/or ``libvirtd -d``
start.
"""

import fcntl
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt

from tests.integration.proc import run

URI = "qemu:///system"
RUN_DIR = Path("/run/libvirt")
LIBVIRTD_SOCKET = RUN_DIR / "libvirt-sock"
VIRTLOGD_SOCKET = RUN_DIR / "virtlogd-sock"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
LOG_DIR = Path("/var/log/libvirt")
# One starter at a time across processes (several pytest runs may share a machine).
LOCK_FILE = Path("/run/vws-test-libvirtd.lock")

DIRECTORIES = (
    LOG_DIR / "qemu",
    Path("/var/lib/libvirt/qemu"),
    Path("/var/lib/libvirt/images"),
    Path("/var/cache/libvirt/qemu"),
    RUN_DIR,
)
# Root-owned guests without confinement: no systemd, cgroups, namespaces or AppArmor here,
# and test files live in pytest's tmp dirs that libvirt must not relabel.
QEMU_SETTINGS = {
    "user": '"root"',
    "group": '"root"',
    "dynamic_ownership": "0",
    "security_driver": '"none"',
    "namespaces": "[ ]",
    "cgroup_controllers": "[ ]",
}
BLOCK_BEGIN = "# BEGIN vws integration tests (tests/integration/libvirtd.py)"
BLOCK_END = "# END vws integration tests"


class LibvirtdUnavailable(Exception):
    """libvirtd cannot run here; the message is the reason, fit for ``pytest.skip``."""


def ensure_libvirtd(timeout: float = 30.0) -> str:
    """Return the system URI once libvirtd serves it, starting the daemons if needed.

    A fresh daemon probes qemu's capabilities (4 to 8 s here), which delays the first
    connection or the first domain start; the result is cached in /var/cache/libvirt/qemu.
    """
    reason = unavailable_reason()
    if reason:
        raise LibvirtdUnavailable(reason)
    # libvirtd starts guests only with virtlogd up to take their qemu logs.
    if not (_answers(VIRTLOGD_SOCKET) and _answers(LIBVIRTD_SOCKET)):
        with _start_lock():
            _prepare_host()
            _start("virtlogd", VIRTLOGD_SOCKET, timeout)
            _start("libvirtd", LIBVIRTD_SOCKET, timeout)
    _check_connection()
    return URI


def unavailable_reason() -> str | None:
    """Why this process cannot start libvirtd, or None if it can."""
    if os.geteuid() != 0:
        return "the system libvirtd and its guests need root"
    missing = [tool for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64") if not shutil.which(tool)]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian libvirt-daemon-system, qemu-system-x86)"
    return None


def _check_connection() -> None:
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError as error:
        log = _tail(LOG_DIR / "libvirtd.log")
        raise RuntimeError(f"libvirtd listens but {URI} does not open: {error}\n{log}") from error


def _answers(path: Path) -> bool:
    """True if a daemon accepts connections on the UNIX socket (a stale file does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


@contextmanager
def _start_lock() -> Iterator[None]:
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _prepare_host() -> None:
    for directory in DIRECTORIES:
        directory.mkdir(parents=True, exist_ok=True)
    _ensure_account("libvirt-qemu")
    configure_qemu()


def _ensure_account(name: str) -> None:
    """The qemu driver resolves its compiled-in user and group before it reads qemu.conf."""
    try:
        grp.getgrnam(name)
    except KeyError:
        run(["groupadd", "--system", name])
    try:
        pwd.getpwnam(name)
    except KeyError:
        home, shell = "/var/lib/libvirt", "/usr/sbin/nologin"
        run(["useradd", "--system", "--gid", name, "--no-create-home", "--home-dir", home, "--shell", shell, name])


def configure_qemu(conf: Path = QEMU_CONF) -> None:
    """Append the settings ``conf`` does not set yet, in one marked block, after a backup
    (``<conf>.vws-orig``, kept from the first time). Settings already there win."""
    text = conf.read_text() if conf.exists() else ""
    if BLOCK_BEGIN in text:
        return
    missing = {key: value for key, value in QEMU_SETTINGS.items() if not _is_set(text, key)}
    if not missing:
        return
    backup = conf.with_name(conf.name + ".vws-orig")
    if conf.exists() and not backup.exists():
        shutil.copy2(conf, backup)
    lines = [BLOCK_BEGIN, *(f"{key} = {value}" for key, value in missing.items()), BLOCK_END]
    staged = conf.with_name(conf.name + ".vws-new")
    staged.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "\n".join(lines) + "\n")
    os.replace(staged, conf)


def _is_set(conf: str, key: str) -> bool:
    return re.search(rf"^\s*{re.escape(key)}\s*=", conf, re.MULTILINE) is not None


def _start(daemon: str, sock: Path, timeout: float) -> None:
    if _answers(sock):
        return
    log = LOG_DIR / f"{daemon}.log"
    # Detached from pytest's session and pipes (a daemon holding a pipe would stall whoever
    # reads it), with its log and early errors in a file we can quote.
    env = {**os.environ, "LIBVIRT_LOG_OUTPUTS": f"3:file:{log}"}
    with open(log, "a") as stderr:
        returncode = subprocess.call(
            [daemon, "-d"], env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
        )
    if returncode:
        raise RuntimeError(f"{daemon} -d exited {returncode}\n{_tail(log)}")
    _wait_for_socket(daemon, sock, log, timeout)


def _wait_for_socket(daemon: str, sock: Path, log: Path, timeout: float) -> None:
    # The daemon is not our child and announces readiness only by listening, so a short
    # filesystem/connect poll with a hard deadline is the simplest reliable wait.
    deadline = time.monotonic() + timeout
    while not _answers(sock):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{daemon} did not listen on {sock} within {timeout:.0f} s\n{_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"

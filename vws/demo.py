"""``make demo``: the main job on the embedded default, end to end, as a grid user would run it.

Makes a development CA in a fresh state dir (``vws-admin ca init``), a proxy from the
user credential it issued (``vws-proxy-init``), starts ``vws-service`` signed by default
(libvirt test driver, SQLite), deploys the sample workspace with ``vws-client`` over
GSI Secure Message, waits for Running, prints its resource properties, destroys it,
and stops the service with SIGTERM.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*command: object, env: dict[str, str]) -> None:
    print(f"\n$ {' '.join(map(str, command))}", flush=True)
    subprocess.run([BIN / str(command[0]), *map(str, command[1:])], check=True, env=env)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vws-demo-") as state:
        security = Path(state) / "security"
        env = {
            **os.environ,
            "X509_USER_CERT": str(security / "usercert.pem"),
            "X509_USER_KEY": str(security / "userkey.pem"),
            "X509_USER_PROXY": str(Path(state) / "proxy.pem"),
            "X509_CERT_DIR": str(security / "certificates"),
        }
        run("vws-admin", "--state-dir", state, "ca", "init", env=env)
        run("vws-proxy-init", "-hours", "1", env=env)
        service = subprocess.Popen(
            [BIN / "vws-service", "--listen", "127.0.0.1:0", "--state-dir", state], stdout=subprocess.PIPE, text=True
        )
        try:
            line = service.stdout.readline().strip()
            print(f"\n{line}")
            factory = line.rsplit(" ", 1)[-1] + "WorkspaceFactoryService"
            epr = Path(state) / "workspace.epr"
            for step in (
                ["factoryrp"],
                ["deploy", "--eprFile", epr, "--deploy-duration", 30, "--deploy-mem", 256, "--poll"],
                ["rpquery", "--eprFile", epr],
                ["destroy", "--eprFile", epr],
            ):
                run("vws-client", "-s", factory, *step, env=env)
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"\nvws-service stopped (exit {service.returncode})")
    return 0 if service.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

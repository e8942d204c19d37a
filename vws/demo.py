"""``make demo``: the main job on the embedded default, end to end, as a user would run it.

Starts ``vws-service`` (libvirt test driver, SQLite in a fresh state dir), deploys the
sample workspace with ``vws-client``, waits for Running, prints its resource
properties, destroys it, and stops the service with SIGTERM.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vws-demo-") as state:
        service = subprocess.Popen(
            [BIN / "vws-service", "--listen", "127.0.0.1:0", "--state-dir", state, "--insecure"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = service.stdout.readline().strip()
            print(line)
            base = line.rsplit(" ", 1)[-1]
            epr = Path(state) / "workspace.epr"
            client = [BIN / "vws-client", "-s", base + "WorkspaceFactoryService"]
            for step in (
                ["factoryrp"],
                ["deploy", "--eprFile", epr, "--deploy-duration", "30", "--deploy-mem", "256", "--poll-delay", "100"],
                ["rpquery", "--eprFile", epr],
                ["destroy", "--eprFile", epr],
            ):
                print(f"\n$ vws-client {' '.join(map(str, step))}", flush=True)
                subprocess.run([*client, *step], check=True, env=os.environ)
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"\nvws-service stopped (exit {service.returncode})")
    return 0 if service.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

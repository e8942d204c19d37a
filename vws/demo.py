"""``make demo``: the main job on the embedded default, end to end, as a grid user would run it.

Makes a development CA in a fresh state dir (``vws-admin ca init``), a proxy from the
user credential it issued (``vws-proxy-init``), starts ``vws-service`` signed by default
(libvirt test driver, SQLite), deploys the sample workspace with ``vws-client`` over
GSI Secure Message, waits for Running, prints its resource properties, destroys it,
then does the same over the EC2 door with the aws CLI (an access key issued by
``vws-admin ec2-keys create`` for the same user, its own config and credentials files),
and stops the service with SIGTERM.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*command: object, env: dict[str, str]) -> None:
    print(f"\n$ {' '.join(map(str, command))}", flush=True)
    subprocess.run([BIN / str(command[0]), *map(str, command[1:])], check=True, env=env)


def output(*command: object, env: dict[str, str]) -> str:
    print(f"\n$ {' '.join(map(str, command))}", flush=True)
    done = subprocess.run(
        [BIN / str(command[0]), *map(str, command[1:])], check=True, env=env, capture_output=True, text=True
    )
    print(done.stdout, end="", flush=True)
    return done.stdout


def ec2_session(state: Path, endpoint: str, env: dict[str, str]) -> None:
    """The same user over the EC2 door: a key from vws-admin, then the aws CLI with its own files."""
    user = shlex.split((state / "security" / "grid-mapfile").read_text())[0]  # whom `ca init` mapped: the WSRF user
    issued = output("vws-admin", "--state-dir", state, "ec2-keys", "create", "--dn", user, env=env).splitlines()
    key_id, secret = issued[0].split()[-1], issued[1].split()[-1]
    aws_dir = state / "aws"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("[default]\nregion = vws\noutput = json\n")
    (aws_dir / "credentials").write_text(f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    aws_env = {
        **env,
        "AWS_CONFIG_FILE": str(aws_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
    }

    def aws(*arguments: str) -> dict:
        printed = output("aws", "ec2", *arguments, "--endpoint-url", endpoint, env=aws_env)
        return json.loads(printed) if printed.strip() else {}

    image = aws("describe-images")["Images"][0]["ImageId"]
    instance = aws("run-instances", "--image-id", image, "--instance-type", "m1.small")["Instances"][0]["InstanceId"]
    aws("wait", "instance-running", "--instance-ids", instance)
    aws("describe-instances", "--instance-ids", instance)
    aws("terminate-instances", "--instance-ids", instance)


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
            [BIN / "vws-service", "--listen", "127.0.0.1:0", "--ec2-listen", "127.0.0.1:0", "--state-dir", state],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line, ec2_line = service.stdout.readline().strip(), service.stdout.readline().strip()
            print(f"\n{line}\n{ec2_line}")
            factory = line.rsplit(" ", 1)[-1] + "WorkspaceFactoryService"
            epr = Path(state) / "workspace.epr"
            for step in (
                ["factoryrp"],
                ["deploy", "--eprFile", epr, "--deploy-duration", 30, "--deploy-mem", 256, "--poll"],
                ["rpquery", "--eprFile", epr],
                ["destroy", "--eprFile", epr],
            ):
                run("vws-client", "-s", factory, *step, env=env)
            ec2_session(Path(state), ec2_line.rsplit(" ", 1)[-1], env)
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"\nvws-service stopped (exit {service.returncode})")
    return 0 if service.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Axis 1.4, the SOAP stack GT4.0 clients were built on, accepts every WSDL vws serves.

For each top-level WSDL, WSDL2Java reads it over HTTP as a client would, from
/wsrf/services/<Service>?wsdl, so every relative import must resolve as served,
and javac compiles the stubs it generates. Each WSDL gets its own output tree:
the trees overlap (the shared types) but differ in which classes are faults.
"""

import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WSDL_DIR = Path(__file__).resolve().parents[1] / "wsdl"
JARS = Path("/usr/share/java")
CLASSPATH = os.pathsep.join(
    str(JARS / f"{name}.jar")
    for name in (
        "axis",
        "axis-jaxrpc",
        "axis-saaj",
        "commons-discovery",
        "commons-logging",
        "wsdl4j",
        "javax.activation",
        "javax.mail",
    )
)
TOP_LEVEL = sorted(path.stem for path in WSDL_DIR.glob("*.wsdl"))
# Not a vws service, so not at ?wsdl: the listener contract is a plain file next to the services.
PLAIN_FILES = {"NotificationConsumerService"}

pytestmark = pytest.mark.skipif(
    not (JARS / "axis.jar").is_file() or not shutil.which("java") or not shutil.which("javac"),
    reason="needs Axis 1.4 (Debian libaxis-java) and a JDK",
)


@pytest.fixture
def services_url(service) -> str:
    """The real service's /wsrf/services/ base URL (the conftest fixture, embedded default)."""
    return service.base_url


@pytest.fixture
def wsdl_url(services_url: str) -> Callable[[str], str]:
    """Where WSDL2Java reads each top-level WSDL from the running service."""
    return lambda name: services_url + (f"{name}.wsdl" if name in PLAIN_FILES else f"{name}?wsdl")


def _run(command: list[str]) -> str | None:
    """None on success, else the command's output (the failure to report)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return None if done.returncode == 0 else f"$ {' '.join(command)}\n{done.stdout}{done.stderr}"


def _generate_and_compile(url: str, out: Path) -> str | None:
    sources, classes = out / "src", out / "classes"
    # --noWrapped, as GT4's own stubs were generated: in the default (wrapped) style Axis
    # unwraps create's request and response into one parameter list, where the request's
    # ensembleEPR/contextEPR and the response's EnsembleEPR/ContextEPR get the same Java name.
    failure = _run(
        ["java", "-cp", CLASSPATH, "org.apache.axis.wsdl.WSDL2Java", "--noWrapped", "--output", str(sources), url]
    )
    if failure:
        return failure
    stubs = sorted(str(path) for path in sources.rglob("*.java"))
    if not stubs:
        return f"WSDL2Java generated nothing from {url}"
    classes.mkdir()
    javac = ["javac", "-nowarn", "-proc:none", "-encoding", "UTF-8", "-cp", CLASSPATH, "-d", str(classes)]
    return _run(javac + stubs)


def test_wsdl2java_and_javac_accept_every_wsdl(wsdl_url, tmp_path):
    assert "WorkspaceFactoryService" in TOP_LEVEL and "WorkspaceService" in TOP_LEVEL
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda name: _generate_and_compile(wsdl_url(name), tmp_path / name), TOP_LEVEL)
        failures = {name: failure for name, failure in zip(TOP_LEVEL, results, strict=True) if failure}
    assert not failures, "\n\n".join(f"{name}:\n{failure}" for name, failure in failures.items())

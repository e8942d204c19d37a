"""Axis 1.4, the SOAP stack GT4.0 clients were built on, accepts every WSDL vws serves.

For each top-level WSDL, WSDL2Java reads it over HTTP from the running service as
a client would, from /wsrf/services/<Service>?wsdl, so every relative import must
resolve as served. The stubs of all the WSDLs then go into one source tree, as a
client that talks to every service has them, and one javac compiles them all.

The WSDLs share their types, so WSDL2Java writes many classes more than once, and
not always alike: a class is generated as a fault (an AxisFault, or with
writeDetails()) by the WSDLs that declare it as an operation's fault, and as a plain
bean by the others. The tree keeps the most fault-like variant; the copies of that
variant must be identical, or two WSDLs describe one type differently.
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
def wsdl_url(service) -> Callable[[str], str]:
    """Where WSDL2Java reads each top-level WSDL: the running vws (conftest's service fixture)."""
    return lambda name: service.base_url + (f"{name}.wsdl" if name in PLAIN_FILES else f"{name}?wsdl")


def _run(command: list[str]) -> str | None:
    """None on success, else the command's output (the failure to report)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return None if done.returncode == 0 else f"$ {' '.join(command)}\n{done.stdout}{done.stderr}"


def _generate(url: str, out: Path) -> str | None:
    # --noWrapped, as GT4's own stubs were generated: in the default (wrapped) style Axis
    # unwraps create's request and response into one parameter list, where the request's
    # ensembleEPR/contextEPR and the response's EnsembleEPR/ContextEPR get the same Java name.
    failure = _run(
        ["java", "-cp", CLASSPATH, "org.apache.axis.wsdl.WSDL2Java", "--noWrapped", "--output", str(out), url]
    )
    if failure is None and not any(out.rglob("*.java")):
        return f"WSDL2Java generated nothing from {url}"
    return failure


def _faultness(source: str) -> tuple[bool, bool]:
    """How much of a fault WSDL2Java made a class: an AxisFault itself; serialisable as a fault detail."""
    return "extends org.apache.axis.AxisFault" in source, "public void writeDetails(" in source


def _merge(trees: list[Path], merged: Path) -> list[str]:
    """Every tree's sources in ``merged``, each class in its most fault-like variant.

    Returns the classes whose copies of that variant differ: two WSDLs describing one type differently.
    """
    copies: dict[Path, dict[Path, str]] = {}
    for tree in trees:
        for source in tree.rglob("*.java"):
            copies.setdefault(source.relative_to(tree), {})[tree] = source.read_text()
    conflicts = []
    for relative, by_tree in sorted(copies.items()):
        most = max(map(_faultness, by_tree.values()))
        chosen = {tree.name: text for tree, text in by_tree.items() if _faultness(text) == most}
        if len(set(chosen.values())) > 1:
            conflicts.append(f"{relative}: {', '.join(sorted(chosen))}")
        target = merged / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(next(iter(chosen.values())))
    return conflicts


def test_wsdl2java_and_one_javac_accept_every_wsdl(wsdl_url, tmp_path):
    assert "WorkspaceFactoryService" in TOP_LEVEL and "WorkspaceService" in TOP_LEVEL
    trees = [tmp_path / "generated" / name for name in TOP_LEVEL]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda name, tree: _generate(wsdl_url(name), tree), TOP_LEVEL, trees)
        failures = {name: failure for name, failure in zip(TOP_LEVEL, results, strict=True) if failure}
    assert not failures, "\n\n".join(f"{name}:\n{failure}" for name, failure in failures.items())

    sources = tmp_path / "src"
    conflicts = _merge(trees, sources)
    assert not conflicts, "classes generated differently by different WSDLs:\n" + "\n".join(conflicts)
    classes = tmp_path / "classes"
    classes.mkdir()
    javac = ["javac", "-nowarn", "-proc:none", "-encoding", "UTF-8", "-cp", CLASSPATH, "-d", str(classes)]
    failure = _run(javac + sorted(str(path) for path in sources.rglob("*.java")))
    assert failure is None, failure

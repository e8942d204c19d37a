"""A fresh Debian machine has every program the code, the tests and the Makefile run.

The Makefile installs DEB_RUN (for the service) and DEB_TEST (for the tests); a program
that comes from neither, nor from a package they depend on, nor from the base system, is
there only by chance on a developer's machine. tests/package_audit.py says which.
"""

import textwrap
from pathlib import Path

import pytest

from tests.debian import Packages, makefile_lists
from tests.package_audit import audit
from tests.programs import Found, makefile_uses, python_uses, shell_commands

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
PYTHON_TREES = ("vws", "clients", "tests", "bench")


@pytest.fixture(scope="module")
def packages() -> Packages:
    return Packages.read()


@pytest.fixture(scope="module")
def project() -> Found:
    found = python_uses(ROOT, sorted(path for tree in PYTHON_TREES for path in (ROOT / tree).rglob("*.py")))
    found.uses |= makefile_uses(MAKEFILE.read_text())
    return found


def without(makefile: str, package: str, list_name: str) -> str:
    """The Makefile with ``package`` dropped from one of its lists."""
    lines = makefile.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(list_name))
    end = next(i for i in range(start, len(lines)) if not lines[i].rstrip().endswith("\\"))
    for i in range(start, end + 1):
        lines[i] = lines[i].replace(f" {package} ", " ").replace(f" {package}\n", "\n")
    broken = "".join(lines)
    assert package in makefile_lists(makefile)[list_name] and package not in makefile_lists(broken)[list_name]
    return broken


def test_every_program_run_comes_from_a_package_the_makefile_installs(project, packages):
    assert not project.unknown, "programs this check cannot follow:\n" + "\n".join(sorted(project.unknown))
    assert {"genisoimage", "qemu-img", "virt-xml-validate", "grid-proxy-init", "python3"} <= {
        use.program for use in project.uses
    }
    problems = audit(MAKEFILE.read_text(), project.uses, packages)
    assert not problems, "\n".join(problems)


def test_a_command_a_script_runs_needs_its_package_too(project, packages):
    """virt-xml-validate (libvirt-clients, which declares no dependency for it) is a shell script running xmllint."""
    problems = audit(without(MAKEFILE.read_text(), "libxml2-utils", "DEB_TEST"), project.uses, packages)
    assert problems == [
        "virt-xml-validate -> xmllint: /usr/bin/xmllint comes from Debian package libxml2-utils, which the Makefile "
        "does not install: add it to DEB_TEST (run at tests/test_pool_domain_xml.py:105)"
    ]


def test_a_program_the_service_runs_must_come_from_deb_run(project, packages):
    broken = without(MAKEFILE.read_text(), "genisoimage", "DEB_RUN").replace("DEB_TEST :=", "DEB_TEST := genisoimage")
    problems = audit(broken, project.uses, packages)
    source = ROOT / "vws/pool/context_drive.py"
    line = next(n for n, text in enumerate(source.read_text().splitlines(), 1) if "subprocess.run(" in text)
    assert problems == [
        "genisoimage: /usr/bin/genisoimage comes from genisoimage, which only DEB_TEST provides: the service runs it, "
        f"move it to DEB_RUN (run at vws/pool/context_drive.py:{line})"
    ]


def test_a_program_nothing_installs_is_named_with_who_runs_it(tmp_path, packages):
    script = tmp_path / "helper"
    script.write_text('#!/bin/sh\n# a helper\nset -e\nvws-no-such-tool --flag "$1" | sort\n')
    script.chmod(0o755)
    source = tmp_path / "vws" / "runner.py"
    source.parent.mkdir()
    source.write_text(
        textwrap.dedent(
            f"""\
            import subprocess

            HELPER = {str(script)!r}


            def run(argv):
                return subprocess.run([str(arg) for arg in argv], check=True)


            def go():
                run([HELPER, "--quiet"])
                subprocess.run("vws-other-missing -x", shell=True)
            """
        )
    )
    found = python_uses(tmp_path, [source])
    assert not found.unknown
    assert audit(MAKEFILE.read_text(), found.uses, packages) == [
        f"{script} -> vws-no-such-tool: not installed, and no package DEB_RUN installs provides it: "
        "add the one that does to DEB_RUN (run at vws/runner.py:11)",
        f"{script}: {script} belongs to no Debian package: make a package the Makefile installs provide it "
        "(run at vws/runner.py:11)",
        "vws-other-missing: not installed, and no package DEB_RUN installs provides it: "
        "add the one that does to DEB_RUN (run at vws/runner.py:12)",
    ]


def test_a_program_hidden_behind_a_value_it_cannot_follow_is_reported(tmp_path):
    source = tmp_path / "tests" / "test_hidden.py"
    source.parent.mkdir()
    source.write_text("import os\nimport subprocess\n\nsubprocess.run([os.environ['TOOL'], '-v'])\n")
    assert python_uses(tmp_path, [source]).unknown == {
        "tests/test_hidden.py:4: cannot tell which program \"os.environ['TOOL']\" is"
    }


def test_shell_commands_are_the_words_in_command_position():
    script = textwrap.dedent(
        """\
        #!/bin/sh
        helper() { inner; }
        A=1 first -x "$A" | second \\
          not-a-command; if [ -x y ]; then third 2>/dev/null >&2 < input; fi
        case "$1" in
          -h|--help) fourth ;;
          (plain) fifth ;;
        esac
        for item in a $(sixth) c; do seventh "$item"; done
        echo "$(eighth -a) `ninth`"  # tenth
        cat <<EOF
        not-run
        EOF
        exec eleventh > out last-argument
        """
    )
    commands = [command for _, command in shell_commands(script)]
    assert commands == [
        "inner", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "cat", "eleventh"
    ]  # fmt: skip

"""vws-client's context actions and ``cluster --file`` against a running broker.

The members' agents are simulated in Python (tests/test_context_agent.py runs the real
one): a thread hears each member the broker registers and, once every one expected has
joined, reports each member's identities and then ok, over the agents' HTTP door.
"""

import queue
import threading

from clients.legacy import main as legacy
from clients.workspace import SAMPLES
from clients.workspace import main as client
from tests import contexts
from vws.workspace.records import Workspace


class SimulatedAgents:
    """Stand-ins for the members' agents: each member that joins reports once all ``expected`` have."""

    def __init__(self, service, expected: int, fail: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self._service = service
        self._expected = expected
        self._fail = fail  # the how-manieth member reports an error instead of ok
        self._joined: queue.Queue[tuple[str, Workspace]] = queue.Queue()
        join = service.contexts.join

        def joining(caller, key, members, spec, lock):  # type: ignore[no-untyped-def]
            join(caller, key, members, spec, lock)
            for member in members:
                self._joined.put((key, member))

        service.contexts.join = joining
        self._thread = threading.Thread(target=self._report, daemon=True)
        self._thread.start()

    def _report(self) -> None:
        members = [self._joined.get(timeout=30) for _ in range(self._expected)]
        key = members[0][0]
        with self._service.store.reading() as db:
            (secret,) = db.execute("select secret from contexts where key = ?", [key]).fetchone()
        door = contexts.Created(None, self._service.base_url.removesuffix("/wsrf/services/") + "/ctx/", key, secret)
        lines = [contexts.identity_line(m.leases[0].ip, m.leases[0].hostname) for _, m in members]
        for line in lines:
            assert contexts.agent_post(door, "retrieve", line)[0] == 200
        for number, line in enumerate(lines, 1):
            if number == self._fail:
                contexts.agent_post(door, "error", line + "error 5 3-data jobs: jobs exited 1\n")
            else:
                contexts.agent_post(door, "ok", line)

    def join(self) -> None:
        self._thread.join(timeout=30)


def test_context_create_deploy_into_it_and_see_each_outcome(run, service, tmp_path, capsys):
    ctx = tmp_path / "ctx.epr"
    code, out = run("context-create", "--expect-injections", "--file", ctx)
    assert code == 0 and "created: EPR written to" in out, out
    agents = SimulatedAgents(service, expected=2)
    for options in ((), ("--lock-context",)):
        code, out = run("deploy", "--file", tmp_path / "ws.epr", "--context", ctx, "--poll", *options)
        assert code == 0, out
    code, out = run("context-inject", "-e", ctx, "--data", "jobs=slots=4", "--last")
    assert (code, out.strip()) == (0, "injected jobs; no more injections")
    agents.join()
    code, out = run("context-status", "-e", ctx, "--wait", "--poll-delay", 20, "--timeout", 30)
    assert code == 0, out
    assert out.count(": ok") == 2 and "member 192.168.128." in out
    code = client(["--anonymous", "context-status", "-e", str(ctx)])  # the EPR names the service: no -s
    assert code == 0
    assert "complete: true  members: 2 (2 reported)  all ok: true  error: false" in capsys.readouterr().out


def test_cluster_deploys_every_group_into_one_context_and_reports_each_member(run, service, tmp_path):
    agents = SimulatedAgents(service, expected=3)
    ctx = tmp_path / "ctx.epr"
    code, out = run("cluster", "--file", SAMPLES / "cluster.xml", "--context-file", ctx, "--poll", "--poll-delay", 20)
    agents.join()
    assert code == 0, out
    assert "head-node: 1 workspace(s) created" in out and "workers: 2 workspace(s) created" in out
    assert out.count(": ok") == 3
    code, out = run("context-status", "-e", ctx)
    assert "complete: true  members: 3 (3 reported)  all ok: true" in out


def test_cluster_exits_3_naming_the_member_that_failed(run, service, tmp_path):
    agents = SimulatedAgents(service, expected=3, fail=2)
    code, out = run("cluster", "--file", SAMPLES / "cluster.xml", "--poll", "--poll-delay", 20)
    agents.join()
    assert code == 3, out
    assert "error: 3-data jobs: jobs exited 1" in out


def test_a_bad_cluster_document_is_one_line_and_exit_2(run, tmp_path):
    bad = tmp_path / "cluster.xml"
    bad.write_text("<cluster><workspace><name>x</name></workspace></cluster>")
    code, out = run("cluster", "--file", bad)
    assert code == 2 and "each workspace needs an image, a quantity and a ctx" in out


def test_lock_context_without_a_context_is_refused(run, tmp_path):
    code, out = run("deploy", "--file", tmp_path / "ws.epr", "--lock-context")
    assert code == 2 and "--lock-context needs --context" in out


def test_the_gt4_clients_context_modes(service, tmp_path, capsys):
    """The workspace client's --ctx-* modes, as Nimbus's scripts typed them."""
    broker = service.base_url + "NimbusContextBroker"
    ctx, data = tmp_path / "ctx.epr", tmp_path / "jobs.txt"
    data.write_text("slots=4\n")

    def workspace(*argv: object) -> tuple[int, str]:
        code = legacy(["-a", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    assert workspace("--ctx-create-injectable", "-s", broker, "--file", ctx)[0] == 0
    assert workspace("--ctx-data", "-e", ctx, "--file", data, "--dataname", "jobs") == (0, "injected jobs\n")
    assert workspace("--ctx-no-more-injections", "-e", ctx) == (0, "no more injections\n")
    code, out = workspace("--ctx-print-status", "-e", ctx)
    assert code == 0 and out.startswith("complete: false  members: 0 (0 reported)"), out
    code, out = workspace("--ctx-data", "-e", ctx, "--file", data)
    assert code == 1 and "--dataname" in out

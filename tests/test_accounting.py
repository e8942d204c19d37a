"""Accounting records, usage reports (vws-admin usage) and quotas, over the wire."""

import csv
import io
from contextlib import redirect_stdout
from datetime import timedelta

import pytest

from tests.callers import ALICE, BOB, client, serve
from tests.deployments import settler
from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from tests.resources import create, create_request, in_ensemble
from vws.cli import admin
from vws.clock import ManualClock, SystemClock
from vws.config import Config
from vws.security.ca import DevCA
from vws.security.proxy import create_proxy
from vws.security.wssecurity.signing import MessageSigner
from vws.service import Service
from vws.workspace.caller import SERVICE
from vws.xmlns import TYPES, qname

DENIED = qname(TYPES, "WorkspaceResourceRequestDeniedFault")


def refused(caller, body) -> SoapFault:
    with pytest.raises(SoapFault) as raised:
        create(caller, body)
    assert raised.value.element == DENIED
    return raised.value


def vws_admin(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert admin.main(list(argv)) == 0
    return out.getvalue()


def test_created_and_removed_records_with_charges(tmp_path, clock):
    state = tmp_path / "state"
    with serve(state, clock, accounting={"charge_granularity_minutes": 5}) as service:
        alice = client(service, ALICE)
        (epr,) = created_eprs(create(alice, create_request(duration="PT30M")))
        clock.advance(timedelta(minutes=11))
        alice.destroy(epr)
        rows = list(service.store.db["accounting_events"].rows_where(order_by="id"))
        alice.close()
    assert [(row["event"], row["owner"], row["memory_mb"], row["vcpus"], row["charge_minutes"]) for row in rows] == [
        ("CREATED", ALICE, 256, 1, 30),
        ("REMOVED", ALICE, 256, 1, 15),  # 11 minutes, in 5-minute units
    ]
    assert rows[0]["node"] and rows[1]["end"] > rows[1]["start"]


def test_vws_admin_usage_table_csv_user_and_period(tmp_path, clock):
    state = tmp_path / "state"
    with serve(state, clock) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        (early,) = created_eprs(create(alice, create_request(duration="PT2H")))
        clock.advance(timedelta(hours=1))
        alice.destroy(early)
        create(bob, create_request(node_number=2, duration="PT1H"))
        alice.close()
        bob.close()
    table = vws_admin("--state-dir", str(state), "usage")
    assert table.splitlines()[0].split() == list(admin.COLUMNS)
    assert {line.split()[0] for line in table.splitlines()[1:]} == {ALICE, BOB}
    rows = list(csv.DictReader(io.StringIO(vws_admin("--state-dir", str(state), "usage", "--csv"))))
    by_owner = {row["owner"]: row for row in rows}
    assert by_owner[ALICE] == {
        "owner": ALICE,
        "created": "1",
        "removed": "1",
        "reserved_minutes": "120",
        "used_minutes": "60",
    }
    assert by_owner[BOB]["created"] == "2" and by_owner[BOB]["reserved_minutes"] == "120"
    only_bob = vws_admin("--state-dir", str(state), "usage", "--csv", "--user", BOB)
    assert [row["owner"] for row in csv.DictReader(io.StringIO(only_bob))] == [BOB]
    midway = (clock.now() - timedelta(minutes=30)).isoformat()
    before = vws_admin("--state-dir", str(state), "usage", "--csv", "--until", midway)
    assert [(row["owner"], row["created"], row["removed"]) for row in csv.DictReader(io.StringIO(before))] == [
        (ALICE, "1", "0")
    ]


def test_quotas_refuse_naming_the_limit_and_reserve_nothing(tmp_path, clock):
    quotas = {"max_workspaces": 3, "max_group_size": 2, "max_reserved_minutes": 120}
    with serve(tmp_path / "state", clock, quotas=quotas) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        assert "max_group_size is 2" in refused(alice, create_request(node_number=3)).description
        assert "max_reserved_minutes is 120" in refused(alice, create_request(duration="PT3H")).description
        create(alice, create_request(node_number=2))
        create(alice, create_request())
        assert "max_workspaces is 3" in refused(alice, create_request()).description
        assert "max_workspaces" in refused(alice, in_ensemble(create_request(), None)).description
        create(bob, create_request())  # quotas are per user
        assert len(service.manager.workspaces(SERVICE)) == 4
        alice.close()
        bob.close()


def test_elapsed_plus_reserved_minutes_and_per_user_rules(tmp_path, clock):
    rules = tmp_path / "quota-rules"
    rules.write_text(f'# subject  limits\n"{BOB}"  max_elapsed_reserved_minutes=0 max_workspaces=1\n')
    quotas = {"max_elapsed_reserved_minutes": 60, "rules_file": rules}
    with serve(tmp_path / "state", clock, quotas=quotas) as service:
        alice, bob = client(service, ALICE), client(service, BOB)
        (first,) = created_eprs(create(alice, create_request(duration="PT30M")))
        clock.advance(timedelta(minutes=20))
        alice.destroy(first)  # 20 minutes used
        create(alice, create_request(duration="PT40M"))  # 20 used + 40 held: exactly the limit
        assert "max_elapsed_reserved_minutes is 60" in refused(alice, create_request(duration="PT1M")).description
        create(bob, create_request(duration="PT5H"))  # Bob's line lifts the limit...
        assert "max_workspaces is 1" in refused(bob, create_request()).description  # ...and sets another
        alice.close()
        bob.close()


def test_a_rule_for_the_callers_grid_mapfile_account_applies_to_signed_requests(tmp_path):
    state, rules = tmp_path / "state", tmp_path / "quota-rules"
    assert admin.main(["--state-dir", str(state), "ca", "init", "--hostname", "localhost", "--account", "physics"]) == 0
    rules.write_text("@chemistry max_workspaces=5\n@physics max_workspaces=1\n")
    config = Config().with_overrides("service", listen="127.0.0.1:0", state_dir=state)
    clock = ManualClock(SystemClock().now())  # the dev CA's certificates are valid from the real now
    service = Service(config.with_overrides("quotas", rules_file=rules), clock=clock)
    service.start()
    signer = MessageSigner(create_proxy(DevCA(state / "security").user(), clock), clock)
    user = Gt4Client(service.base_url, sign=signer.sign, settle=settler(service))
    try:
        create(user, create_request())
        assert "max_workspaces is 1 for /O=Grid/" in refused(user, create_request()).description
        assert len(service.manager.workspaces(SERVICE)) == 1
    finally:
        user.close()
        service.stop()

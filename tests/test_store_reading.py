"""Reads on connections of their own: a long one holds up no request, and sees one commit whole."""

import sqlite3
import threading

import pytest

from tests.gt4wire import Gt4Client, created_eprs
from vws.store.database import Store
from vws.xmlns import WORKSPACE, qname

KEY = qname(WORKSPACE, "WorkspaceKey")


def test_a_long_read_holds_up_no_request_and_keeps_its_view(service, gt4):
    (first,) = created_eprs(gt4.create())
    reading, finish = threading.Event(), threading.Event()
    seen: list[int] = []

    def long_read() -> None:  # a scan of every live workspace, as queryCurrentWorkspaces or the reconciler make
        with service.store.reading() as db:
            cursor = db.execute("select id from workspaces where destroyed_at is null order by id")
            seen.append(cursor.fetchone()[0])
            reading.set()
            finish.wait(60)
            seen.extend(row[0] for row in cursor)

    reader = threading.Thread(target=long_read)
    reader.start()
    try:
        assert reading.wait(10)
        other = Gt4Client(service.base_url, timeout=10)  # before, the read held the store: no answer
        (second,) = created_eprs(other.create())
        other.destroy(first)
        other.close()
    finally:
        finish.set()
        reader.join()
    assert seen == [int(first.key(KEY))]  # the view it began with: neither the create nor the destroy
    with service.store.reading() as db:
        assert [row[0] for row in db.execute("select id from workspaces where destroyed_at is null")] == [
            int(second.key(KEY))
        ]


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "vws.sqlite")
    yield opened
    opened.close()


def test_a_read_inside_a_transaction_sees_what_it_wrote(store):
    with store.transaction() as db:
        db.execute("insert into nodes (name, uri, memory_mb, cpus) values ('n1', 'test:///default', 1, 1)")
        with store.reading() as view:
            assert view.execute("select name from nodes").fetchall() == [("n1",)]


def test_a_write_in_a_reading_block_is_refused(store):
    with store.reading() as db, pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("insert into nodes (name, uri, memory_mb, cpus) values ('n1', 'test:///default', 1, 1)")
    with store.reading() as db:
        assert db.execute("select count(*) from nodes").fetchone() == (0,)

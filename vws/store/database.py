"""The SQLite database every layer shares: one writer behind a lock, readers on their own connections.

SQLite serialises writers anyway; one writing connection behind an RLock keeps every
transaction (``with store.transaction() as db``) atomic across the server's threads.
Reads (``with store.reading() as db``) run on connections of their own, each in a read
transaction: WAL lets a reader see the last commit while a writer goes on, so a long
read (every live workspace, a reconciliation round) never holds up another request,
and a write never waits for one. A reading block inside a transaction on the same
thread reads through the writer, so it sees what that transaction has written.
WAL with synchronous=NORMAL survives a killed process without an fsync per commit.
"""

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from vws.store.schema import MIGRATIONS

# Idle read connections kept for reuse; more are opened while more threads read at once.
_IDLE_READERS = 8


class Store:
    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._memory = self._path == ":memory:"  # one connection only: readers share the writer's lock
        if not self._memory:  # 0600 whatever the umask: SQLite gives the -wal and -shm files the database's mode
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        if not self._memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()
        self.db = Database(conn)
        self._readers: list[Database] = []  # idle read connections
        self._readers_guard = threading.Lock()
        self._thread = threading.local()  # per thread: the transaction or read it is inside, if any
        with self._lock:
            MIGRATIONS.apply(self.db)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together or not at all."""
        with self._lock, self.db.atomic():
            outer = getattr(self._thread, "current", None)
            self._thread.current = self.db
            try:
                yield self.db
            finally:
                self._thread.current = outer

    @contextmanager
    def reading(self) -> Iterator[Database]:
        """A consistent view for reads that span several queries, held up by no writer."""
        current = getattr(self._thread, "current", None)
        if current is not None:  # inside this thread's transaction or read: the same view
            yield current
            return
        if self._memory:
            with self._lock:
                yield self.db
            return
        reader = self._reader()
        reader.execute("begin")
        self._thread.current = reader
        try:
            yield reader
        finally:
            self._thread.current = None
            reader.execute("rollback")  # it wrote nothing: ending the read is all
            self._give_back(reader)

    def shows_only_commits(self, db: Database) -> bool:
        """Whether ``db`` (from ``reading``) shows committed data only, not an open transaction's writes."""
        return db is not self.db or not db.conn.in_transaction

    def problem(self, wait: float = 2.0) -> str | None:
        """Why the store cannot be used now (a writer has held it longer than ``wait`` seconds, or
        it cannot be read), or None when it can."""
        if not self._lock.acquire(timeout=wait):
            return f"the store has been busy for more than {wait:g} s"
        self._lock.release()
        try:
            with self.reading() as db:
                db.execute("select 1 from workspaces limit 1").fetchall()
        except sqlite3.Error as error:
            return f"the store cannot be read: {error}"
        return None

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
        with self._readers_guard:
            for reader in self._readers:
                reader.conn.close()
            self._readers.clear()

    def _reader(self) -> Database:
        with self._readers_guard:
            if self._readers:
                return self._readers.pop()
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")  # a write slipped into a reading block fails, never races the writer
        return Database(conn)

    def _give_back(self, reader: Database) -> None:
        with self._readers_guard:
            if len(self._readers) < _IDLE_READERS:
                self._readers.append(reader)
                return
        reader.conn.close()

"""The SQLite database every layer shares: one connection, one lock, WAL journal.

SQLite serialises writers anyway; one connection behind an RLock keeps every
transaction (``with store.transaction() as db``) atomic across the server's threads.
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


class Store:
    def __init__(self, path: Path | str) -> None:
        memory = str(path) == ":memory:"
        if not memory:  # 0600 whatever the umask: SQLite gives the -wal and -shm files the database's mode
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()
        self.db = Database(conn)
        with self._lock:
            MIGRATIONS.apply(self.db)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together or not at all."""
        with self._lock, self.db.atomic():
            yield self.db

    @contextmanager
    def reading(self) -> Iterator[Database]:
        """A consistent view for reads that span several queries."""
        with self._lock:
            yield self.db

    def problem(self, wait: float = 2.0) -> str | None:
        """Why the store cannot be read now (held by another thread longer than ``wait`` seconds, or
        failing), or None when it can."""
        if not self._lock.acquire(timeout=wait):
            return f"the store has been busy for more than {wait:g} s"
        try:
            self.db.execute("select 1 from workspaces limit 1").fetchall()
        except sqlite3.Error as error:
            return f"the store cannot be read: {error}"
        finally:
            self._lock.release()
        return None

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

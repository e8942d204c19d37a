"""Plain-SQL helpers for the pool's hot paths.

sqlite-utils' ``Table.rows_where``/``update``/``upsert`` look the table's schema up on
every call (several PRAGMA queries); placement, leases and every workspace snapshot
run often enough that the pool queries with plain SQL instead.
"""

from collections.abc import Sequence

from sqlite_utils import Database


def rows(db: Database, sql: str, params: Sequence[object] = ()) -> list[dict]:
    cursor = db.execute(sql, list(params))
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def one(db: Database, sql: str, params: Sequence[object] = ()) -> dict | None:
    found = rows(db, sql, params)
    return found[0] if found else None

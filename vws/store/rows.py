"""Plain-statement row access for the hot paths.

sqlite-utils' Table methods introspect the schema on every call (``sqlite_master``
and ``PRAGMA table_info``), which costs more than the write itself; the request path
uses these instead. Table and column names always come from code, never from input.
"""

from collections.abc import Mapping, Sequence

from sqlite_utils import Database


def insert(db: Database, table: str, row: Mapping[str, object], ignore: bool = False) -> int:
    """The new row's id; ``ignore``: a row a unique constraint refuses is skipped instead."""
    columns = ", ".join(f'"{column}"' for column in row)
    marks = ", ".join("?" for _ in row)
    verb = "insert or ignore" if ignore else "insert"
    cursor = db.execute(f'{verb} into "{table}" ({columns}) values ({marks})', list(row.values()))
    return cursor.lastrowid  # type: ignore[return-value]


def update(db: Database, table: str, key: int, changes: Mapping[str, object]) -> None:
    assignments = ", ".join(f'"{column}" = ?' for column in changes)
    db.execute(f'update "{table}" set {assignments} where id = ?', [*changes.values(), key])


def select(db: Database, sql: str, parameters: Sequence[object] = ()) -> list[dict[str, object]]:
    cursor = db.execute(sql, list(parameters))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def one(db: Database, sql: str, parameters: Sequence[object] = ()) -> dict[str, object] | None:
    found = select(db, sql, parameters)
    return found[0] if found else None

"""Grow a store to many requests by cloning the real rows mailflow wrote for a few.

A seed of requests is processed by mailflow itself; every table that hangs off `requests`
is then copied over and over, keys remapped, unique values made unique, timestamps moved
back in time, most copies closed (publicado/rechazado), as an institution's store after
years of use. Generic over the schema, so it follows the migrations without edits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, DateTime, Integer, String, Table, func, select, text, update

from mailflow.core.model import Status
from mailflow.store.repository import make_engine
from mailflow.store.schema import Base, OutboxRow, RequestRow

CHUNK_ROWS = 5000


def _family(metadata_tables: Iterable[Table]) -> list[Table]:
    """Return `requests` and the tables that refer to it (or to them), in insert order."""
    chosen: list[Table] = []
    for table in metadata_tables:
        refers = {fk.column.table.name for fk in table.foreign_keys}
        if table.name == RequestRow.__tablename__ or refers & {t.name for t in chosen}:
            chosen.append(table)
    return chosen


def _unique_columns(table: Table) -> set[str]:
    names: set[str] = set()
    for constraint in table.constraints:
        if constraint.__class__.__name__ == "UniqueConstraint":
            names.update(c.name for c in constraint.columns)  # type: ignore[attr-defined]
    for column in table.columns:
        if column.unique:
            names.add(column.name)
    for index in table.indexes:
        if index.unique:
            names.update(c.name for c in index.columns if hasattr(c, "name"))
    return names


class Cloner:
    """Copy the seed's request families ``copies`` times into the same database."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tables = _family(Base.metadata.sorted_tables)
        self.seed = {
            t.name: [dict(r) for r in conn.execute(select(t)).mappings()] for t in self.tables
        }
        self.next_id = {
            t.name: (conn.execute(select(func.max(t.c.id))).scalar() or 0) + 1
            for t in self.tables
            if "id" in t.c
        }
        self.unique = {t.name: _unique_columns(t) for t in self.tables}

    def copy(self, k: int) -> dict[str, list[dict[str, Any]]]:
        """Return the rows of copy number k (k ≥ 1), ids fresh, ready to insert."""
        ids: dict[str, dict[int, int]] = {}
        out: dict[str, list[dict[str, Any]]] = {}
        back = dt.timedelta(hours=k)
        for table in self.tables:
            remap = ids.setdefault(table.name, {})
            rows = []
            for seed in self.seed[table.name]:
                row = dict(seed)
                if "id" in row:
                    remap[seed["id"]] = row["id"] = self.next_id[table.name]
                    self.next_id[table.name] += 1
                for fk in table.foreign_keys:
                    name, target = fk.parent.name, fk.column.table.name
                    if row.get(name) is not None and target in ids:
                        row[name] = ids[target].get(row[name], row[name])
                for name in self.unique[table.name] - {"id"}:
                    row[name] = _unique(table.c[name].type, row[name], k)
                for column in table.columns:
                    if isinstance(column.type, DateTime) and row.get(column.name) is not None:
                        row[column.name] -= back
                if table.name == RequestRow.__tablename__:
                    _close(row, k)
                rows.append(row)
            out[table.name] = rows
        return out


def _unique(kind: Any, value: Any, k: int) -> Any:
    if value is None:
        return None
    if isinstance(kind, Integer):
        return value + k * 10_000_000
    if isinstance(kind, String):
        text = f"{value}~{k}"
        return text[-kind.length :] if kind.length else text
    return value


def _close(row: dict[str, Any], k: int) -> None:
    """Close 99 copies in 100 (publicado, one in ten rechazado); keep one open."""
    if k % 100 == 0:
        return
    row["status"] = Status.RECHAZADO.value if k % 10 == 0 else Status.PUBLICADO.value
    row["due_at"] = None
    row["code"] = f"RRSS-{2025 - k // 1000}-{row['id']:06d}"  # ids are unique


def grow(url: str, requests: int) -> int:
    """Clone the store's requests (with their rows) until it holds ``requests``; count them."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(OutboxRow).values(status="sent")  # seeds were sent already
            )
            cloner = Cloner(conn)
        seeds = len(cloner.seed[RequestRow.__tablename__])
        per_chunk = max(1, CHUNK_ROWS // max(1, sum(len(r) for r in cloner.seed.values())))
        copies = range(1, max(1, requests // seeds))
        for start in range(copies.start, copies.stop, per_chunk):
            batch = [cloner.copy(k) for k in range(start, min(start + per_chunk, copies.stop))]
            with engine.begin() as conn:
                for table in cloner.tables:
                    rows = [row for copy in batch for row in copy[table.name]]
                    if rows:
                        conn.execute(table.insert(), rows)
        if engine.dialect.name == "postgresql":
            # The clones were inserted with their own ids: move each id sequence past them,
            # or the daemon's next insert collides with a clone. It did for the ledger, whose
            # primary-key clash reads as "claimed by another process": the memory bench on
            # PostgreSQL skipped its 20 MB mails instead of handling them.
            with engine.begin() as conn:
                for table in cloner.tables:
                    if "id" in table.c:
                        conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f"(SELECT MAX(id) FROM {table.name}))"
                            )
                        )
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(RequestRow)).scalar_one())
    finally:
        engine.dispose()

"""Positions that readers of the ledger have applied, each stored in the same transaction as the
effect it stands for (DESIGN principle 5). One row per reader: the relay, and every projection."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, select, update
from sqlalchemy.exc import IntegrityError

from minqing.db import is_postgres

metadata_obj = MetaData()

checkpoints_table = Table(
    "checkpoints", metadata_obj,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


def load(conn: Connection, name: str, *, lock: bool = False) -> int:
    """The position `name` has applied (0 if never). With `lock`, hold the row until commit so two
    instances of one reader cannot apply the same events twice."""
    query = select(checkpoints_table.c.position).where(checkpoints_table.c.name == name)
    if lock and is_postgres(conn.engine):
        query = query.with_for_update()
    position = conn.execute(query).scalar()
    if position is not None:
        return position
    try:
        with conn.begin_nested():
            conn.execute(checkpoints_table.insert().values(name=name, position=0))
    except IntegrityError:
        pass
    return conn.execute(query).scalar_one()


def save(conn: Connection, name: str, position: int) -> None:
    """Move the checkpoint forward to `position`; never backwards (see `reset`)."""
    conn.execute(update(checkpoints_table).where(checkpoints_table.c.name == name,
                                                 checkpoints_table.c.position < position).values(position=position))


def advance(conn: Connection, name: str, expected: int, position: int) -> bool:
    """Compare-and-set: move from `expected` to `position`; False when someone else moved it."""
    result = conn.execute(update(checkpoints_table).where(checkpoints_table.c.name == name,
                                                          checkpoints_table.c.position == expected)
                          .values(position=position))
    return result.rowcount == 1


def reset(conn: Connection, name: str) -> None:
    """Back to 0, for rebuilding a projection from the start of the ledger."""
    conn.execute(update(checkpoints_table).where(checkpoints_table.c.name == name).values(position=0))

"""Verifying the recorded history (`minqing audit verify`).

Walks the stored rows in position order and recomputes each hash from the row itself and its
predecessor's hash. Any edit, deletion, insertion or reordering breaks the chain at the first
affected position; a deleted tail shows as a head that no longer matches the last row.

The chain has no secret in it: someone able to rewrite the whole table could recompute it. Against
that, publish the head (`minqing audit head`) somewhere the database administrator cannot reach;
a later verify must reproduce every published head.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from minqing.db import read_transaction
from minqing.ledger import GENESIS_HASH, chain_hash, events_table, head_table


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head_position: int
    head_hash: str
    bad_position: int | None = None
    problem: str | None = None


def verify(engine: Engine, batch: int = 5000, progress=None) -> Verdict:
    """Walk the chain; `progress(checked, head_position)` hears each batch (the CLI shows it)."""
    prev_hash, expected_position, checked = GENESIS_HASH, 1, 0
    stream_versions: dict[str, int] = {}
    with read_transaction(engine) as conn:
        head = conn.execute(select(head_table.c.position, head_table.c.hash).where(head_table.c.id == 1)).first()
        after = 0
        while True:
            # bounded by the head read above: appends made while verifying are not part of this check
            bound = head.position if head is not None else 0
            rows = conn.execute(select(events_table).where(events_table.c.position > after,
                                                           events_table.c.position <= bound)
                                .order_by(events_table.c.position).limit(batch)).mappings().all()
            if not rows:
                break
            for row in rows:
                pos = row["position"]
                if pos != expected_position:
                    return _bad(checked, head, expected_position,
                                f"position {expected_position} is missing (next stored position is {pos}): "
                                "an event was deleted or positions were rewritten")
                recomputed = chain_hash(prev_hash, pos, row["event_id"], row["stream"], row["version"], row["type"],
                                        row["schema_version"], row["data"], row["metadata"], row["recorded_at"])
                if recomputed != row["hash"]:
                    return _bad(checked, head, pos,
                                f"position {pos}: hash does not match its content and predecessor "
                                "(the event was edited, inserted or moved)")
                want_version = stream_versions.get(row["stream"], 0) + 1
                if row["version"] != want_version:
                    return _bad(checked, head, pos,
                                f"position {pos}: stream {row['stream']} jumps to version {row['version']}, "
                                f"expected {want_version}")
                stream_versions[row["stream"]] = row["version"]
                prev_hash, expected_position, checked = row["hash"], pos + 1, checked + 1
            after = rows[-1]["position"]
            if progress is not None:
                progress(checked, bound)
    if head is None:
        return _bad(checked, head, 0, "the ledger head row is missing")
    with read_transaction(engine) as conn:
        beyond = conn.execute(select(events_table.c.position).where(events_table.c.position > head.position)
                              .order_by(events_table.c.position).limit(1)).scalar()
    if (head.position, head.hash) != (expected_position - 1, prev_hash):
        return _bad(checked, head, expected_position,
                    f"the head says position {head.position} but the last intact event is at "
                    f"{expected_position - 1}: events at the end were deleted or the head was altered")
    if beyond is not None and not _appended_since(engine, head.position, beyond):
        return _bad(checked, head, beyond, f"position {beyond} lies beyond the head: an event was inserted")
    return Verdict(True, checked, head.position, head.hash)


def _appended_since(engine: Engine, old_head: int, beyond: int) -> bool:
    """Whether rows past the head we verified against were appended legitimately meanwhile."""
    with read_transaction(engine) as conn:
        now = conn.execute(select(head_table.c.position).where(head_table.c.id == 1)).scalar()
    return now is not None and now >= beyond


def _bad(checked: int, head, position: int, problem: str) -> Verdict:
    return Verdict(False, checked, head.position if head else 0, head.hash if head else "", position, problem)

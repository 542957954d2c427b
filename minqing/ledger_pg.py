"""The ledger's append on PostgreSQL in one round trip: a PL/pgSQL function created with the schema.

Why a stored function: an append must hold the ledger's append lock from the moment it reads the
head until its commit (DESIGN principle 3). Done from the client, that is five statements and their
round trips under the lock, and every other writer waits for all of them. Inside the server the lock
is held only for the function's own work and the commit's WAL flush; run in autocommit mode, the
whole append — lock, checks, chain, insert, head update, NOTIFY, commit — is one statement and one
round trip.

What the function keeps, exactly as the portable path in minqing.ledger does:
* the append lock: `SELECT … FROM ledger_head FOR UPDATE`. Taken first and alone, because positions
  must be handed out in commit order: while we hold the row, no other append can commit, so every
  position below ours is committed before ours becomes visible (a reader that applied N never later
  finds an event below N). The function is VOLATILE, so each later statement in it takes a fresh
  snapshot and sees what the previous lock holder committed;
* idempotent event ids: ids already recorded make it return 'recorded' (the caller compares
  content and returns the recorded copies); nothing is written;
* expected versions: each write's expected version is compared with its stream's version before
  the append (the maximum version, read from the (stream, version) unique index); a mismatch
  returns 'conflict' with the stream and its version, and nothing is written — no exception, so a
  caller's own transaction stays usable, as before;
* the hash chain: the client sends, per event, the JSON text of the row's fields that it knows
  (encoded by minqing.ledger.canonical_json, the same encoder chain_hash uses); the function only
  splices in the position and version it assigned and takes SHA-256, so the hash is byte for byte
  what chain_hash computes, and `minqing audit verify` checks old and new histories alike;
* one multi-row INSERT (unnest of arrays) for the events, one UPDATE of the head, and a NOTIFY on
  channel `minqing_ledger` (delivered only when the transaction commits) that wakes the relay and
  the followers (minqing.ledger_listen); its payload is the new head position and the event types
  appended, so a follower wakes only for the types it follows.

No plan trap: the function runs with enable_seqscan off, so the duplicate-id and version lookups are
planned as scans of the unique indexes even when their plans were first cached on a tiny table
(a generic plan cached then would otherwise stay a sequential scan as the table grows).
"""
from __future__ import annotations

NOTIFY_CHANNEL = "minqing_ledger"

FUNCTION = """
CREATE OR REPLACE FUNCTION minqing_append(
    p_streams text[],          -- the distinct streams written
    w_stream int[],            -- per write: index into p_streams (1-based)
    w_expected int[],          -- per write: expected version, NULL for ANY
    e_stream int[],            -- per event: index into p_streams
    e_ids text[], e_types text[], e_schema int[], e_data text[], e_meta text[],
    e_head text[],             -- per event: JSON of [event_id, stream] without the brackets
    e_tail text[],             -- per event: JSON of [type, schema_version, data, metadata, recorded_at], likewise
    p_recorded_at text,
    OUT status text, OUT detail text, OUT positions bigint[], OUT versions int[], OUT hashes text[])
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $fn$
DECLARE
    head_position bigint;
    prev text;
    current int[];
    n int := cardinality(e_ids);
    i int;
    s int;
BEGIN
    -- The append lock (see the module docstring of minqing.ledger_pg): serialises appends so that
    -- positions are gap-free in commit order.
    SELECT h.position, h.hash INTO head_position, prev FROM ledger_head h WHERE h.id = 1 FOR UPDATE;

    IF EXISTS (SELECT 1 FROM ledger_events e WHERE e.event_id = ANY(e_ids)) THEN
        status := 'recorded';
        RETURN;
    END IF;

    SELECT array_agg(coalesce((SELECT max(e.version) FROM ledger_events e WHERE e.stream = u.name), 0)
                     ORDER BY u.ord)
      INTO current FROM unnest(p_streams) WITH ORDINALITY AS u(name, ord);
    FOR i IN 1 .. cardinality(w_stream) LOOP
        s := w_stream[i];
        IF w_expected[i] IS NOT NULL AND w_expected[i] <> current[s] THEN
            status := 'conflict';
            detail := p_streams[s];
            versions := ARRAY[w_expected[i], current[s]];
            RETURN;
        END IF;
    END LOOP;

    positions := array_fill(0::bigint, ARRAY[n]);
    versions := array_fill(0, ARRAY[n]);
    hashes := array_fill(''::text, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        s := e_stream[i];
        current[s] := current[s] + 1;
        positions[i] := head_position + i;
        versions[i] := current[s];
        prev := encode(sha256(convert_to(
            prev || '|[' || positions[i] || ',' || e_head[i] || ',' || versions[i] || ',' || e_tail[i] || ']',
            'UTF8')), 'hex');
        hashes[i] := prev;
    END LOOP;

    INSERT INTO ledger_events (position, event_id, stream, version, type, schema_version, data, metadata,
                               recorded_at, hash)
    SELECT u.position, u.event_id, p_streams[u.s], u.version, u.type, u.schema_version, u.data, u.metadata,
           p_recorded_at, u.hash
      FROM unnest(positions, e_ids, e_stream, versions, e_types, e_schema, e_data, e_meta, hashes)
           AS u(position, event_id, s, version, type, schema_version, data, metadata, hash);
    UPDATE ledger_head SET position = head_position + n, hash = prev WHERE id = 1;
    -- '<head position> <types appended, comma-separated>': followers wake only for types they follow
    PERFORM pg_notify('minqing_ledger', (head_position + n)::text || ' '
                      || array_to_string(ARRAY(SELECT DISTINCT t FROM unnest(e_types) AS t), ','));
    status := 'ok';
END
$fn$
"""

# Parameters in binary (%b): psycopg's text format escapes every quote and backslash of every array
# element with a regular expression, which cost more than all the rest of a 100-event append.
CALL = ("SELECT status, detail, positions, versions, hashes FROM minqing_append("
        "%b::text[], %b::int[], %b::int[], %b::int[], %b::text[], %b::text[], %b::int[], %b::text[], "
        "%b::text[], %b::text[], %b::text[], %b::text)")


def function_matches(conn) -> bool:
    """Whether the database's minqing_append is this code's (its body, as PostgreSQL keeps it)."""
    body = FUNCTION.split("$fn$")[1]
    installed = conn.exec_driver_sql("SELECT prosrc FROM pg_proc WHERE proname = 'minqing_append'").scalars().all()
    return installed == [body]


def create_function(conn) -> None:
    """Create or replace the function (in the caller's transaction). An advisory transaction lock
    is taken first because two processes replacing one function at once fail with 'tuple
    concurrently updated'."""
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(1835626865)")
    conn.exec_driver_sql(FUNCTION)

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
* groups: one call carries one or more *groups*, each one caller's append (minqing.ledger_group
  gathers the appends that wait for the lock into one call: group commit). Each group is decided on
  its own, in order, and gets its own status; a group refused leaves the others' appends unchanged;
* idempotent event ids: a group with ids already recorded gets 'recorded' (the caller compares
  content and returns the recorded copies); nothing of it is written;
* expected versions: each write's expected version is compared with its stream's version before
  the group's append (the maximum version, read from the (stream, version) unique index, plus what
  earlier groups of the same call appended); a mismatch gives the group 'conflict' with the stream
  and both versions, and nothing of it is written — no exception, so a caller's own transaction
  stays usable, as before;
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
(a generic plan cached then would otherwise stay a sequential scan as the table grows). And it runs
with plan_cache_mode = force_generic_plan: its statements are planned once per session, not at every
call (with the default, PostgreSQL kept planning the array-parameter statements anew each time:
about 130 µs of the function's 330 µs per call on the reference machine). Its own work is kept to
plain PL/pgSQL expressions where it can, since each SQL statement costs tens of µs of executor
start-up, and its loop does per event only what needs the lock: the position, the version and the
chain (the client sends each event's group, so the INSERT finds its recorded_at, and the NOTIFY's
list of types).
"""
from __future__ import annotations

NOTIFY_CHANNEL = "minqing_ledger"

FUNCTION = """
CREATE OR REPLACE FUNCTION minqing_append(
    p_streams text[],          -- the distinct streams written, over all groups
    w_stream int[],            -- per write: index into p_streams (1-based)
    w_expected int[],          -- per write: expected version, NULL for ANY
    g_writes int[],            -- per group: index of its last write (a group's writes are contiguous)
    e_stream int[],            -- per event: index into p_streams
    e_group int[],             -- per event: its group (1-based)
    g_events int[],            -- per group: index of its last event (a group's events are contiguous)
    g_at text[],               -- per group: recorded_at
    e_ids text[], e_types text[], e_schema int[], e_data text[], e_meta text[],
    e_head text[],             -- per event: JSON of [event_id, stream] without the brackets
    e_tail text[],             -- per event: JSON of [type, schema_version, data, metadata, recorded_at], likewise
    p_types text,              -- the call's event types, comma-separated: the NOTIFY's payload
    OUT statuses text[],       -- per group: 'ok', 'recorded' or 'conflict'
    OUT details text[],        -- per group: the conflicting stream
    OUT expected int[], OUT actual int[],   -- per group: the conflicting write's versions
    OUT positions bigint[], OUT versions int[], OUT hashes text[])   -- per event; 0/NULL if not appended
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    head_position bigint;
    pos bigint;
    prev text;
    current int[];
    found text[];
    n int := cardinality(e_ids);
    groups int := cardinality(g_events);
    g int;
    i int;
    s int;
    w_first int := 1;
    e_first int := 1;
    ok boolean;
BEGIN
    -- The append lock (see the module docstring of minqing.ledger_pg): serialises appends so that
    -- positions are gap-free in commit order.
    SELECT h.position, h.hash INTO head_position, prev FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
    pos := head_position;

    SELECT array_agg(e.event_id) INTO found FROM ledger_events e WHERE e.event_id = ANY(e_ids);
    SELECT array_agg(coalesce((SELECT max(e.version) FROM ledger_events e WHERE e.stream = u.name), 0)
                     ORDER BY u.ord)
      INTO current FROM unnest(p_streams) WITH ORDINALITY AS u(name, ord);

    statuses := array_fill(NULL::text, ARRAY[groups]);
    details := array_fill(NULL::text, ARRAY[groups]);
    expected := array_fill(NULL::int, ARRAY[groups]);
    actual := array_fill(NULL::int, ARRAY[groups]);
    positions := array_fill(0::bigint, ARRAY[n]);
    versions := array_fill(0, ARRAY[n]);
    hashes := array_fill(NULL::text, ARRAY[n]);
    -- Each group is one caller's append, decided on its own, in order: a later group sees the
    -- versions an earlier group of the same call took.
    FOR g IN 1 .. groups LOOP
        ok := true;
        IF found IS NOT NULL AND e_ids[e_first:g_events[g]] && found THEN
            statuses[g] := 'recorded';
            ok := false;
        ELSE
            FOR i IN w_first .. g_writes[g] LOOP
                s := w_stream[i];
                IF w_expected[i] IS NOT NULL AND w_expected[i] <> current[s] THEN
                    statuses[g] := 'conflict';
                    details[g] := p_streams[s];
                    expected[g] := w_expected[i];
                    actual[g] := current[s];
                    ok := false;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF ok THEN
            statuses[g] := 'ok';
            FOR i IN e_first .. g_events[g] LOOP
                s := e_stream[i];
                current[s] := current[s] + 1;
                pos := pos + 1;
                positions[i] := pos;
                versions[i] := current[s];
                prev := encode(sha256(convert_to(
                    prev || '|[' || pos || ',' || e_head[i] || ',' || current[s] || ',' || e_tail[i] || ']',
                    'UTF8')), 'hex');
                hashes[i] := prev;
            END LOOP;
        END IF;
        w_first := g_writes[g] + 1;
        e_first := g_events[g] + 1;
    END LOOP;
    IF pos = head_position THEN
        RETURN;                      -- nothing appended: no insert, no head update, no NOTIFY
    END IF;

    INSERT INTO ledger_events (position, event_id, stream, version, type, schema_version, data, metadata,
                               recorded_at, hash)
    SELECT u.position, u.event_id, p_streams[u.s], u.version, u.type, u.schema_version, u.data, u.metadata,
           g_at[u.g], u.hash
      FROM unnest(positions, e_ids, e_stream, e_group, versions, e_types, e_schema, e_data, e_meta, hashes)
           AS u(position, event_id, s, g, version, type, schema_version, data, metadata, hash)
     WHERE u.position > 0;
    UPDATE ledger_head SET position = pos, hash = prev WHERE id = 1;
    -- '<head position> <types, comma-separated>': followers wake only for types they follow. The
    -- types are the whole call's, so a group refused may add a type nothing of which was appended:
    -- a follower of it wakes, finds nothing new and sleeps again (the client lists them, so that the
    -- loop above does no work per event beyond the chain).
    PERFORM pg_notify('minqing_ledger', pos::text || ' ' || p_types);
END
$fn$
"""

# The call's arrays travel as text, each joined by one separator and split by the server
# (string_to_array, in C): psycopg dumps a Python list element by element in Python, which cost
# ~50 µs per call even for one-element lists, and ~10 µs per event of a 100-event append — more than
# the rest of the client's work. SEP never occurs inside an element: data, metadata and the chain's
# texts are JSON, whose strings escape every control character, and the other texts (streams, ids,
# types, times) are checked by `wire`. Integers are joined by commas; an empty element is NULL (an
# expected version of "any").
SEP = "\x1f"
_TEXT, _INTS = "string_to_array(%b::text, E'\\x1f')", "string_to_array(%b::text, ',', '')::int[]"
_KINDS = (_TEXT, _INTS, _INTS, _INTS, _INTS, _INTS, _INTS, _TEXT, _TEXT, _TEXT, _INTS, _TEXT, _TEXT, _TEXT, _TEXT,
          "%b::text")
CALL = ("SELECT statuses, details, expected, actual, positions, versions, hashes FROM minqing_append("
        + ", ".join(_KINDS) + ")")
_CHECKED = (0, 7, 8, 9)          # p_streams, g_at, e_ids, e_types: texts that are not JSON


def wire(args: tuple) -> tuple:
    """minqing_append's arguments (lists, as minqing.ledger_group.arguments gives them) as CALL's."""
    out = []
    for i, (kind, value) in enumerate(zip(_KINDS, args)):
        if kind is _TEXT:
            if i in _CHECKED and any(SEP in v for v in value):
                raise ValueError(f"a stream, event id, type or time holds the control character U+001F: {value!r}")
            out.append(SEP.join(value))
        elif kind is _INTS:
            out.append(",".join("" if v is None else str(int(v)) for v in value))
        else:
            out.append(value)
    return tuple(out)


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

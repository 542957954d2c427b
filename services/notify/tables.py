"""Notify's own tables: the delivery outbox."""
from sqlalchemy import Column, Integer, MetaData, String, Table, Text

metadata_obj = MetaData()

outbox_table = Table(
    "notify_outbox", metadata_obj,
    # one row per (event, template, recipient): a redelivered event cannot notify twice
    Column("key", String(300), primary_key=True),
    Column("case_id", String(36), nullable=True),
    Column("county", String(40), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("template", String(100), nullable=False),
    Column("recipient_role", String(20), nullable=False),
    Column("recipient_ref", String(100), nullable=False),   # vault subject or cadre id, never an address
    Column("recipient_masked", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("caused_by", String(36), nullable=False),
    Column("status", String(10), nullable=False, index=True),      # pending | sending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", String(32), nullable=False, index=True),
    Column("last_error", Text, nullable=True),
    Column("sent_at", String(32), nullable=True),
)

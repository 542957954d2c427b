"""Intake's own tables (DESIGN principle 9: no other service reads them)."""
from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata_obj = MetaData()

counties_table = Table(          # projection of policy.published: the catalogue intake validates against
    "intake_counties", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("policy", Text, nullable=False),
)

tracking_counters_table = Table(  # the daily sequence in tracking numbers
    "intake_tracking_counters", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("day", String(8), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

case_access_table = Table(       # how a resident proves a case is theirs: tracking number + PIN
    "intake_case_access", metadata_obj,
    Column("case_id", String(36), primary_key=True),
    Column("tracking_no", String(40), nullable=False, unique=True),
    Column("pin_hash", String(64), nullable=False),
    Column("salt", String(32), nullable=False),
)

open_cases_table = Table(        # what a new report may duplicate: open cases by category, resident and place
    "intake_open_cases", metadata_obj,
    Column("case_id", String(36), primary_key=True),
    Column("county", String(40), nullable=False),
    Column("category", String(100), nullable=False),
    Column("subject", String(36), nullable=True),     # the resident's vault subject (None: anonymous)
    Column("place", String(100), nullable=False),     # the most specific place code
    Column("spot", String(300), nullable=True),       # the normalised address given, if any
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("reported_at", String(32), nullable=False),
    Column("open", Boolean, nullable=False),
    Column("merged_into", String(36), nullable=True),
    Index("intake_open_cases_lookup", "county", "category", "open"),
)

channel_secrets_table = Table(   # inbound webhook secrets (WeChat), encrypted under the vault's master key
    "intake_channel_secrets", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("channel", String(20), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", String(32), nullable=False),
)

external_refs_table = Table(     # a message an inbound channel delivers twice is one case
    "intake_external_refs", metadata_obj,
    Column("channel", String(20), primary_key=True),
    Column("county", String(40), primary_key=True),     # message ids are unique per account, i.e. per county
    Column("ref", String(100), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("tracking_no", String(40), nullable=False),
)

idempotency_keys_table = Table(  # a client's Idempotency-Key and the first answer to it (services/intake/idempotency.py)
    "intake_idempotency_keys", metadata_obj,
    Column("scope", String(160), primary_key=True),       # county and actor of the principal who sent it
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),    # SHA-256 of the request as sent
    Column("status", Integer, nullable=True),             # NULL while the first request is being registered
    Column("answer", LargeBinary, nullable=True),         # the first answer, sealed under the vault's master key
    Column("expires_at", String(32), nullable=False),
    Index("intake_idempotency_expiry", "expires_at"),
)

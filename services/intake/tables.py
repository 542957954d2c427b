"""Intake's own tables (DESIGN principle 9: no other service reads them)."""
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

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

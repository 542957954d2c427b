"""Assessment's own tables: per-cadre counts and what it needs to judge on-time resolution."""
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata_obj = MetaData()

cadre_counts_table = Table(
    "assessment_cadre_counts", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("cadre", String(100), primary_key=True),
    Column("unit", String(100), nullable=False),
    Column("assigned", Integer, nullable=False, default=0),
    Column("resolved", Integer, nullable=False, default=0),
    Column("resolved_on_time", Integer, nullable=False, default=0),
)

holdings_table = Table(        # who holds each case and until when (from the assignment events)
    "assessment_case_holdings", metadata_obj,
    Column("case_id", String(36), primary_key=True),
    Column("cadre", String(100), nullable=False),
    Column("resolution_due", String(32), nullable=False),
)

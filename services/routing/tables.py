"""Routing's own tables."""
from sqlalchemy import Column, Integer, MetaData, String, Table, Text

metadata_obj = MetaData()

policies_table = Table(      # projection of policy.published, every version kept (replays need old ones)
    "routing_policies", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("policy", Text, nullable=False),
)

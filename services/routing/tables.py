"""Routing's own tables: projections of the ledger, rebuildable by replay."""
from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata_obj = MetaData()

policies_table = Table(      # projection of policy.published, every version kept (replays need old ones)
    "routing_policies", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("policy", Text, nullable=False),
)

# One row per case: the worklist and the load each cadre carries (for balancing duty cadres).
cases_table = Table(
    "routing_cases", metadata_obj,
    Column("case_id", String(100), primary_key=True),
    Column("county", String(40), nullable=False),
    Column("tracking_no", String(100)),
    Column("category", String(100)),
    Column("township", String(100)),
    Column("status", String(20), nullable=False),
    Column("tier", String(100)),
    Column("unit", String(100)),
    Column("cadre", String(100)),
    Column("urgency", String(10)),
    Column("summary", Text),
    Column("response_due", String(32)),
    Column("resolution_due", String(32)),
    Column("overdue", Boolean, nullable=False, default=False),
    Column("pressure", String(20)),
    Column("reply_due", String(32)),
    Column("is_open", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Index("routing_cases_unit_open", "county", "unit", "is_open"),
    Index("routing_cases_cadre_open", "county", "cadre", "is_open"),
)

# Pending timers, one row per (case, kind), indexed by when they fall due: a sweep reads only what
# is due, so its cost follows the due work, not the number of open cases (issue #5 §5).
timers_table = Table(
    "routing_timers", metadata_obj,
    Column("case_id", String(100), primary_key=True),
    Column("kind", String(30), primary_key=True),
    Column("county", String(40), nullable=False),
    Column("due_at", String(32), nullable=False),
    Index("routing_timers_due", "due_at"),
)

"""Assessment's own tables: the attributed facts every figure is summed from, the case state
attribution needs between events, the rules versions, and the county facts (time zone, cadres)."""
from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, Text

metadata_obj = MetaData()

facts_table = Table(      # one row per (event, metric, subject): the explanation of every figure
    "assessment_facts", metadata_obj,
    Column("position", BigInteger, primary_key=True),
    Column("metric", String(40), primary_key=True),
    Column("kind", String(10), primary_key=True),          # cadre | unit | township | county
    Column("subject", String(100), primary_key=True),
    Column("county", String(40), nullable=False, index=True),
    Column("month", String(7), nullable=False, index=True),  # YYYY-MM, the county's local date
    Column("value", Float, nullable=False),
    Column("case_id", String(36), nullable=True),
    Column("event_type", String(60), nullable=False),
)

cases_table = Table(
    "assessment_cases", metadata_obj,
    Column("case_id", String(36), primary_key=True),
    Column("state", Text, nullable=False),                   # attribution.CaseState as JSON
)

visit_days_table = Table(  # the days a cadre already has a visit on (one visit day per day)
    "assessment_visit_days", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("cadre", String(100), primary_key=True),
    Column("day", String(10), primary_key=True),
)

rules_table = Table(
    "assessment_rules", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("published_at", String(32), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("document", Text, nullable=False),
)

counties_table = Table(   # from the latest county policy: time zone and the cadres' units and roles
    "assessment_counties", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("timezone", String(60), nullable=False),
    Column("policy", Text, nullable=False),
)

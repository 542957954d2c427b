"""Notify's own tables (principle 9: no other service reads them).

Addresses never appear here: a recipient is a vault subject (resident) or a contact key whose
address is sealed in the vault; secrets are sealed under the vault's master key.
"""
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text

metadata_obj = MetaData()

outbox_table = Table(
    "notify_outbox", metadata_obj,
    # one row per (event, template, recipient): a redelivered event cannot notify twice
    Column("key", String(300), primary_key=True),
    Column("case_id", String(36), nullable=True),
    Column("county", String(40), nullable=False),
    Column("channel", String(20), nullable=False),      # the channel asked for; `log` when none is configured
    Column("template", String(100), nullable=False),
    Column("recipient_role", String(20), nullable=False),
    Column("recipient_ref", String(200), nullable=False),   # vault subject or contact key, never an address
    Column("recipient_masked", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("caused_by", String(36), nullable=False),
    Column("quiet", Integer, nullable=False, default=0),     # 1: keep out of the county's quiet hours
    # pending → claimed → sending → sent | failed; claimed rows whose lease lapsed go back to pending,
    # sending rows whose lease lapsed are failed as "interrupted" (at most once: never sent twice)
    Column("status", String(10), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("retries", Integer, nullable=False, default=0),   # operator retries after failure
    Column("claimed_by", String(36), nullable=True),         # the sender round holding the lease
    Column("next_attempt_at", String(32), nullable=False, index=True),
    Column("last_error", Text, nullable=True),
    Column("sent_at", String(32), nullable=True),
    Column("channel_used", String(20), nullable=True),
)

policies_table = Table(       # the county policies notify has seen, latest version per county
    "notify_policies", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("document", Text, nullable=False),
)

contacts_table = Table(       # where cadres, supervisors and notice boards are reached
    "notify_contacts", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("recipient", String(200), primary_key=True),    # cadre:<id> | supervisor:<township>|supervisor:county | board:<unit>
    Column("channel", String(20), nullable=False),          # sms | email | webhook | log
    Column("subject", String(100), nullable=False),         # vault subject holding the address
    Column("masked", String(100), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

followups_table = Table(      # one 回访 per delivered result
    "notify_followups", metadata_obj,
    Column("id", String(36), primary_key=True),              # the case.delivered event id
    Column("case_id", String(36), nullable=False, index=True),
    Column("county", String(40), nullable=False),
    Column("subject", String(100), nullable=False),          # the resident asked
    Column("status", String(12), nullable=False, index=True),   # scheduled | asked | answered | unreachable
    Column("asks", Integer, nullable=False),
    Column("next_due", String(32), nullable=False, index=True),
    Column("asked_at", String(32), nullable=True),
)

inbound_secrets_table = Table(
    "notify_inbound_secrets", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("channel", String(20), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", String(32), nullable=False),
)

inbound_messages_table = Table(     # inbound SMS replies already handled (the gateway may push again)
    "notify_inbound_messages", metadata_obj,
    Column("county", String(40), primary_key=True),
    Column("msg_id", String(64), primary_key=True),
    Column("outcome", String(40), nullable=False),
    Column("case_id", String(36), nullable=True),
    Column("received_at", String(32), nullable=False),
)

subscriptions_table = Table(
    "notify_subscriptions", metadata_obj,
    Column("id", String(36), primary_key=True),
    Column("county", String(40), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("types", Text, nullable=False),                   # JSON list of event types or `prefix.*` patterns
    Column("secret", LargeBinary, nullable=False),
    Column("description", String(200), nullable=True),
    Column("status", String(10), nullable=False),            # active | removed
    Column("position", BigInteger, nullable=False),          # the last ledger position delivered or skipped
    Column("delivered", BigInteger, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),  # consecutive failures of the current event
    Column("next_attempt_at", String(32), nullable=False),
    Column("lease_until", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(100), nullable=False),
)

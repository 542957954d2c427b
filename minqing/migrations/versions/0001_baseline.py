"""Baseline: every table as the release before migrations (main at b6c66ba) made them with create_all.

On an empty database this creates them all. On a database made by an earlier release (tables, but no
alembic_version) it *adopts* it: every baseline table that exists must have exactly the baseline's
columns — otherwise the upgrade stops (AdoptionError) naming each table and column that differs,
and nothing is changed —; tables that do not exist yet (a service that never started there) are
created. One older shape is upgraded rather than refused: consumer_parked without `stream` and
`held_behind` (before held streams), which earlier releases altered at every start.

Long because it is a frozen copy of 32 tables, written out column by column as Alembic renders
them: a migration must not import today's models, which change after it.

Only column names are compared: types are the backend's own spelling (SQLite reflects what it was
told), and no release ever changed a column's type without renaming it.

The definitions below are frozen copies (rendered by Alembic from the models at b6c66ba): a later
change of a model needs a migration of its own, never an edit here.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
LEGACY_PARKED = {"stream", "held_behind"}     # consumer_parked before held streams

TABLES = {
    'access_log': ('id', 'at', 'county', 'case_id', 'token_id', 'role', 'actor', 'action'),
    'access_pin_failures': ('counter', 'failures', 'since', 'blocked_until'),
    'access_tokens': ('token_id', 'secret_hash', 'role', 'county', 'unit', 'cadre', 'label', 'created_at', 'expires_at', 'revoked_at'),
    'assessment_cases': ('case_id', 'state'),
    'assessment_counties': ('county', 'timezone', 'policy'),
    'assessment_facts': ('position', 'metric', 'kind', 'subject', 'county', 'month', 'value', 'case_id', 'event_type'),
    'assessment_rules': ('county', 'version', 'published_at', 'position', 'document'),
    'assessment_visit_days': ('county', 'cadre', 'day'),
    'checkpoints': ('name', 'position'),
    'console_accounts': ('account_id', 'username', 'password_hash', 'role', 'county', 'unit', 'cadre', 'disabled', 'must_change_password', 'failed_attempts', 'locked_until', 'created_at'),
    'console_sessions': ('token_id', 'account_id', 'csrf', 'last_seen', 'ended_at'),
    'consumer_parked': ('consumer', 'position', 'event_id', 'type', 'error', 'parked_at', 'stream', 'held_behind'),
    'intake_case_access': ('case_id', 'tracking_no', 'pin_hash', 'salt'),
    'intake_channel_secrets': ('county', 'channel', 'secret', 'created_at'),
    'intake_counties': ('county', 'version', 'policy'),
    'intake_external_refs': ('channel', 'county', 'ref', 'case_id', 'tracking_no'),
    'intake_idempotency_keys': ('scope', 'key', 'fingerprint', 'status', 'answer', 'expires_at'),
    'intake_open_cases': ('case_id', 'county', 'category', 'subject', 'place', 'spot', 'lat', 'lon', 'reported_at', 'open', 'merged_into'),
    'intake_tracking_counters': ('county', 'day', 'last'),
    'ledger_events': ('position', 'event_id', 'stream', 'version', 'type', 'schema_version', 'data', 'metadata', 'recorded_at', 'hash'),
    'ledger_head': ('id', 'position', 'hash'),
    'notify_contacts': ('county', 'recipient', 'channel', 'subject', 'masked', 'updated_at'),
    'notify_followups': ('id', 'case_id', 'county', 'subject', 'status', 'asks', 'next_due', 'asked_at'),
    'notify_inbound_messages': ('county', 'msg_id', 'outcome', 'case_id', 'received_at'),
    'notify_inbound_secrets': ('county', 'channel', 'secret', 'created_at'),
    'notify_outbox': ('key', 'case_id', 'county', 'channel', 'template', 'recipient_role', 'recipient_ref', 'recipient_masked', 'body', 'caused_by', 'quiet', 'status', 'attempts', 'retries', 'claimed_by', 'next_attempt_at', 'last_error', 'sent_at', 'channel_used'),
    'notify_policies': ('county', 'version', 'document'),
    'notify_subscriptions': ('id', 'county', 'url', 'types', 'secret', 'description', 'status', 'position', 'delivered', 'failures', 'next_attempt_at', 'lease_until', 'last_error', 'created_at', 'created_by'),
    'routing_cases': ('case_id', 'county', 'tracking_no', 'category', 'township', 'status', 'tier', 'unit', 'cadre', 'urgency', 'summary', 'response_due', 'resolution_due', 'overdue', 'pressure', 'reply_due', 'is_open', 'version'),
    'routing_policies': ('county', 'version', 'policy'),
    'routing_timers': ('case_id', 'kind', 'county', 'due_at'),
    'vault_subjects': ('subject', 'lookup', 'wrapped_key', 'ciphertext', 'erased_at'),
}


def _create_access_log() -> None:
    op.create_table('access_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('at', sa.String(length=32), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('token_id', sa.String(length=16), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_access_log_case_id'), 'access_log', ['case_id'], unique=False)
    op.create_index(op.f('ix_access_log_county'), 'access_log', ['county'], unique=False)


def _create_access_pin_failures() -> None:
    op.create_table('access_pin_failures',
        sa.Column('counter', sa.String(length=120), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('since', sa.String(length=32), nullable=False),
        sa.Column('blocked_until', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('counter')
    )


def _create_access_tokens() -> None:
    op.create_table('access_tokens',
        sa.Column('token_id', sa.String(length=16), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('unit', sa.String(length=100), nullable=True),
        sa.Column('cadre', sa.String(length=100), nullable=True),
        sa.Column('label', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.Column('expires_at', sa.String(length=32), nullable=False),
        sa.Column('revoked_at', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('token_id')
    )


def _create_assessment_cases() -> None:
    op.create_table('assessment_cases',
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('case_id')
    )


def _create_assessment_counties() -> None:
    op.create_table('assessment_counties',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('timezone', sa.String(length=60), nullable=False),
        sa.Column('policy', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('county')
    )


def _create_assessment_facts() -> None:
    op.create_table('assessment_facts',
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('metric', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=True),
        sa.Column('event_type', sa.String(length=60), nullable=False),
        sa.PrimaryKeyConstraint('position', 'metric', 'kind', 'subject')
    )
    op.create_index(op.f('ix_assessment_facts_county'), 'assessment_facts', ['county'], unique=False)
    op.create_index(op.f('ix_assessment_facts_month'), 'assessment_facts', ['month'], unique=False)


def _create_assessment_rules() -> None:
    op.create_table('assessment_rules',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('published_at', sa.String(length=32), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('county', 'version')
    )


def _create_assessment_visit_days() -> None:
    op.create_table('assessment_visit_days',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('cadre', sa.String(length=100), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint('county', 'cadre', 'day')
    )


def _create_checkpoints() -> None:
    op.create_table('checkpoints',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name')
    )


def _create_console_accounts() -> None:
    op.create_table('console_accounts',
        sa.Column('account_id', sa.String(length=12), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('password_hash', sa.String(length=300), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('unit', sa.String(length=100), nullable=True),
        sa.Column('cadre', sa.String(length=100), nullable=True),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('must_change_password', sa.Boolean(), nullable=False),
        sa.Column('failed_attempts', sa.Integer(), nullable=False),
        sa.Column('locked_until', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('account_id'),
        sa.UniqueConstraint('username')
    )


def _create_console_sessions() -> None:
    op.create_table('console_sessions',
        sa.Column('token_id', sa.String(length=16), nullable=False),
        sa.Column('account_id', sa.String(length=12), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('last_seen', sa.String(length=32), nullable=False),
        sa.Column('ended_at', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('token_id')
    )
    op.create_index(op.f('ix_console_sessions_account_id'), 'console_sessions', ['account_id'], unique=False)


def _create_consumer_parked() -> None:
    op.create_table('consumer_parked',
        sa.Column('consumer', sa.String(length=100), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('parked_at', sa.String(length=32), nullable=False),
        sa.Column('stream', sa.String(length=200), nullable=True),
        sa.Column('held_behind', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('consumer', 'position')
    )


def _create_intake_case_access() -> None:
    op.create_table('intake_case_access',
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('tracking_no', sa.String(length=40), nullable=False),
        sa.Column('pin_hash', sa.String(length=64), nullable=False),
        sa.Column('salt', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('case_id'),
        sa.UniqueConstraint('tracking_no')
    )


def _create_intake_channel_secrets() -> None:
    op.create_table('intake_channel_secrets',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('county', 'channel')
    )


def _create_intake_counties() -> None:
    op.create_table('intake_counties',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('policy', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('county')
    )


def _create_intake_external_refs() -> None:
    op.create_table('intake_external_refs',
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('ref', sa.String(length=100), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('tracking_no', sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint('channel', 'county', 'ref')
    )


def _create_intake_idempotency_keys() -> None:
    op.create_table('intake_idempotency_keys',
        sa.Column('scope', sa.String(length=160), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('status', sa.Integer(), nullable=True),
        sa.Column('answer', sa.LargeBinary(), nullable=True),
        sa.Column('expires_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'key')
    )
    op.create_index('intake_idempotency_expiry', 'intake_idempotency_keys', ['expires_at'], unique=False)


def _create_intake_open_cases() -> None:
    op.create_table('intake_open_cases',
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('category', sa.String(length=100), nullable=False),
        sa.Column('subject', sa.String(length=36), nullable=True),
        sa.Column('place', sa.String(length=100), nullable=False),
        sa.Column('spot', sa.String(length=300), nullable=True),
        sa.Column('lat', sa.Float(), nullable=True),
        sa.Column('lon', sa.Float(), nullable=True),
        sa.Column('reported_at', sa.String(length=32), nullable=False),
        sa.Column('open', sa.Boolean(), nullable=False),
        sa.Column('merged_into', sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint('case_id')
    )
    op.create_index('intake_open_cases_lookup', 'intake_open_cases', ['county', 'category', 'open'], unique=False)


def _create_intake_tracking_counters() -> None:
    op.create_table('intake_tracking_counters',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('day', sa.String(length=8), nullable=False),
        sa.Column('last', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('county', 'day')
    )


def _create_ledger_events() -> None:
    op.create_table('ledger_events',
        sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('stream', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('schema_version', sa.Integer(), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('metadata', sa.Text(), nullable=False),
        sa.Column('recorded_at', sa.String(length=32), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('position'),
        sa.UniqueConstraint('event_id'),
        sa.UniqueConstraint('stream', 'version', name='ledger_events_stream_version')
    )


def _create_ledger_head() -> None:
    op.create_table('ledger_head',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )


def _create_notify_contacts() -> None:
    op.create_table('notify_contacts',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('recipient', sa.String(length=200), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('masked', sa.String(length=100), nullable=False),
        sa.Column('updated_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('county', 'recipient')
    )


def _create_notify_followups() -> None:
    op.create_table('notify_followups',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('asks', sa.Integer(), nullable=False),
        sa.Column('next_due', sa.String(length=32), nullable=False),
        sa.Column('asked_at', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_notify_followups_case_id'), 'notify_followups', ['case_id'], unique=False)
    op.create_index(op.f('ix_notify_followups_next_due'), 'notify_followups', ['next_due'], unique=False)
    op.create_index(op.f('ix_notify_followups_status'), 'notify_followups', ['status'], unique=False)


def _create_notify_inbound_messages() -> None:
    op.create_table('notify_inbound_messages',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('msg_id', sa.String(length=64), nullable=False),
        sa.Column('outcome', sa.String(length=40), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=True),
        sa.Column('received_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('county', 'msg_id')
    )


def _create_notify_inbound_secrets() -> None:
    op.create_table('notify_inbound_secrets',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('county', 'channel')
    )


def _create_notify_outbox() -> None:
    op.create_table('notify_outbox',
        sa.Column('key', sa.String(length=300), nullable=False),
        sa.Column('case_id', sa.String(length=36), nullable=True),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('template', sa.String(length=100), nullable=False),
        sa.Column('recipient_role', sa.String(length=20), nullable=False),
        sa.Column('recipient_ref', sa.String(length=200), nullable=False),
        sa.Column('recipient_masked', sa.String(length=100), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('caused_by', sa.String(length=36), nullable=False),
        sa.Column('quiet', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('retries', sa.Integer(), nullable=False),
        sa.Column('claimed_by', sa.String(length=36), nullable=True),
        sa.Column('next_attempt_at', sa.String(length=32), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', sa.String(length=32), nullable=True),
        sa.Column('channel_used', sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_notify_outbox_next_attempt_at'), 'notify_outbox', ['next_attempt_at'], unique=False)
    op.create_index(op.f('ix_notify_outbox_status'), 'notify_outbox', ['status'], unique=False)


def _create_notify_policies() -> None:
    op.create_table('notify_policies',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('county')
    )


def _create_notify_subscriptions() -> None:
    op.create_table('notify_subscriptions',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('types', sa.Text(), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('delivered', sa.BigInteger(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.String(length=32), nullable=False),
        sa.Column('lease_until', sa.String(length=32), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_notify_subscriptions_county'), 'notify_subscriptions', ['county'], unique=False)


def _create_routing_cases() -> None:
    op.create_table('routing_cases',
        sa.Column('case_id', sa.String(length=100), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('tracking_no', sa.String(length=100), nullable=True),
        sa.Column('category', sa.String(length=100), nullable=True),
        sa.Column('township', sa.String(length=100), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('tier', sa.String(length=100), nullable=True),
        sa.Column('unit', sa.String(length=100), nullable=True),
        sa.Column('cadre', sa.String(length=100), nullable=True),
        sa.Column('urgency', sa.String(length=10), nullable=True),
        sa.Column('summary', sa.Text(), nullable=True),
        sa.Column('response_due', sa.String(length=32), nullable=True),
        sa.Column('resolution_due', sa.String(length=32), nullable=True),
        sa.Column('overdue', sa.Boolean(), nullable=False),
        sa.Column('pressure', sa.String(length=20), nullable=True),
        sa.Column('reply_due', sa.String(length=32), nullable=True),
        sa.Column('is_open', sa.Boolean(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('case_id')
    )
    op.create_index('routing_cases_cadre_open', 'routing_cases', ['county', 'cadre', 'is_open'], unique=False)
    op.create_index('routing_cases_unit_open', 'routing_cases', ['county', 'unit', 'is_open'], unique=False)


def _create_routing_policies() -> None:
    op.create_table('routing_policies',
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('policy', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('county', 'version')
    )


def _create_routing_timers() -> None:
    op.create_table('routing_timers',
        sa.Column('case_id', sa.String(length=100), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('county', sa.String(length=40), nullable=False),
        sa.Column('due_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('case_id', 'kind')
    )
    op.create_index('routing_timers_due', 'routing_timers', ['due_at'], unique=False)


def _create_vault_subjects() -> None:
    op.create_table('vault_subjects',
        sa.Column('subject', sa.String(length=36), nullable=False),
        sa.Column('lookup', sa.String(length=64), nullable=True),
        sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
        sa.Column('ciphertext', sa.LargeBinary(), nullable=True),
        sa.Column('erased_at', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('subject'),
        sa.UniqueConstraint('lookup')
    )


def _adoption_problems(inspector, present: set[str]) -> tuple[list[str], bool]:
    problems, legacy_parked = [], False
    for name in sorted(present):
        found = {c["name"] for c in inspector.get_columns(name)}
        missing, unexpected = set(TABLES[name]) - found, found - set(TABLES[name])
        if name == "consumer_parked" and missing and missing <= LEGACY_PARKED and not unexpected:
            legacy_parked = True
            continue
        if missing:
            problems.append(f"{name} lacks column(s) {', '.join(sorted(missing))}")
        if unexpected:
            problems.append(f"{name} has column(s) the baseline does not: {', '.join(sorted(unexpected))}")
    return problems, legacy_parked


def _add_held_streams(inspector) -> None:
    found = {c["name"] for c in inspector.get_columns("consumer_parked")}
    with op.batch_alter_table("consumer_parked") as batch:
        if "stream" not in found:
            batch.add_column(sa.Column("stream", sa.String(length=200), nullable=True))
        if "held_behind" not in found:
            batch.add_column(sa.Column("held_behind", sa.BigInteger(), nullable=True))
    if "stream" not in found:
        op.execute("UPDATE consumer_parked SET stream = (SELECT stream FROM ledger_events "
                   "WHERE ledger_events.position = consumer_parked.position)")


def upgrade() -> None:
    from minqing.schema import AdoptionError
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names()) & set(TABLES)
    problems, legacy_parked = _adoption_problems(inspector, present)
    if problems:
        raise AdoptionError(problems)
    for name in TABLES:
        if name not in present:
            globals()[f"_create_{name}"]()
    if legacy_parked:
        _add_held_streams(inspector)
    op.execute(sa.text("INSERT INTO ledger_head (id, position, hash) SELECT 1, 0, :genesis "
                       "WHERE NOT EXISTS (SELECT 1 FROM ledger_head WHERE id = 1)").bindparams(genesis=GENESIS_HASH))


def downgrade() -> None:
    raise NotImplementedError("Minqing does not downgrade: restore the backup taken before the upgrade")

"""Alembic's environment for Minqing: migrations run only through minqing.schema (`minqing db upgrade`,
or `minqing run` on its own database), on the connection and in the transaction it passes, so an
upgrade is all or nothing on both backends (SQLite and PostgreSQL both have transactional DDL).

New migrations: write them by hand in versions/ (`down_revision` = the previous head); for SQLite,
change an existing table inside `op.batch_alter_table(...)` (SQLite cannot ALTER most things, batch
mode copies the table), which also works on PostgreSQL. Every migration must keep history readable:
never drop or rewrite ledger_events (DESIGN principle 1).
"""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `minqing db upgrade`, not the alembic command")
context.configure(connection=connection, render_as_batch=True, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()

"""Console accounts gain an optional second factor (issue #14.1, services/console/totp.py):
`totp_secret` (base32; NULL: none) and `totp_last_step` (the last TOTP step accepted, so a code is
never taken twice). Both nullable: every existing account keeps logging in with its password alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("console_accounts") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("Minqing does not downgrade: restore the backup taken before the upgrade")

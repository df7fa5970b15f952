"""Outbox parking: a row the broker refuses for good is parked, not retried forever

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PENDING = sa.text("sent_at IS NULL AND parked_at IS NULL")
PARKED = sa.text("parked_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    # Partial indexes: the relay's claim and the readiness check read only pending rows, and
    # the parked-rows gauge only parked ones, however many sent rows accumulate.
    op.create_index("ix_outbox_pending", "outbox", ["id"], sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index("ix_outbox_parked", "outbox", ["parked_at"], sqlite_where=PARKED, postgresql_where=PARKED)


def downgrade() -> None:
    op.drop_index("ix_outbox_parked", table_name="outbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("parked_at")

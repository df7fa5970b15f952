"""Back-office forms sent twice make one row; a webhook secret shown once after its form

The form submission that made a follow-up sequence, a follow-up rule or a webhook endpoint, each
unique; the one that last rotated an endpoint's secret; and until when the back office may show
the secret it made, once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sequences", "follow_up_rules"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("submission", sa.String(), nullable=True))
            batch_op.create_unique_constraint(batch_op.f(f"uq_{table}_submission"), ["submission"])
    with op.batch_alter_table("webhook_endpoints") as batch_op:
        batch_op.add_column(sa.Column("submission", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("rotation_submission", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("show_secret_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_webhook_endpoints_submission"), ["submission"])


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch_op:
        batch_op.drop_constraint("uq_webhook_endpoints_submission", type_="unique")
        batch_op.drop_column("show_secret_until")
        batch_op.drop_column("rotation_submission")
        batch_op.drop_column("submission")
    for table in ("follow_up_rules", "sequences"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_submission", type_="unique")
            batch_op.drop_column("submission")

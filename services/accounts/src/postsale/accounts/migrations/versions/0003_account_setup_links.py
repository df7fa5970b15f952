"""Account setup by emailed link and at checkout

Where the customer goes after setup, browser tokens that cannot set up an existing customer
record, and passwords chosen at checkout waiting for their purchase.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 13:37:35.432489
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_activations",
        sa.Column("token_sha256", sa.String(), nullable=False),
        sa.Column("first_name", sa.String(), nullable=False),
        sa.Column("last_name", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_pending_activations")),
    )
    with op.batch_alter_table("customers") as batch_op:
        batch_op.add_column(sa.Column("first_purchase_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("first_order_id", sa.String(), nullable=True))
    with op.batch_alter_table("setup_tokens") as batch_op:
        batch_op.add_column(sa.Column("after_setup_url", sa.String(), nullable=True))
        # Tokens stored before this revision keep working as they did.
        batch_op.add_column(sa.Column("email_proof_required", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("setup_tokens") as batch_op:
        batch_op.drop_column("email_proof_required")
        batch_op.drop_column("after_setup_url")
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_column("first_order_id")
        batch_op.drop_column("first_purchase_id")
    op.drop_table("pending_activations")

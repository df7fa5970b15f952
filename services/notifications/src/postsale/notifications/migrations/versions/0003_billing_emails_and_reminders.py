"""Billing emails: the purchases and subscription states they name, and reminders with a due time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 14:05:32.555860
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = sa.text("done_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("offer_name", sa.String(), nullable=False),
        sa.Column("subscription_id", sa.String(), nullable=True),
        sa.Column("on_partial_refund", sa.String(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
    )
    op.create_index(op.f("ix_purchases_customer_id"), "purchases", ["customer_id"])
    op.create_index(op.f("ix_purchases_subscription_id"), "purchases", ["subscription_id"])
    op.create_table(
        "subscription_states",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("purchase_id", sa.String(), nullable=True),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("offer_name", sa.String(), nullable=True),
        sa.Column("billing", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_states")),
    )
    op.create_index(op.f("ix_subscription_states_customer_id"), "subscription_states", ["customer_id"])
    op.create_index(op.f("ix_subscription_states_purchase_id"), "subscription_states", ["purchase_id"])
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subscription_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("to", sa.String(), nullable=False),
        sa.Column("moment", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
    )
    op.create_index(op.f("ix_reminders_subscription_id"), "reminders", ["subscription_id"])
    # Partial: the scheduler's claim reads only the reminders still to do.
    op.create_index("ix_reminders_pending", "reminders", ["due_at"], sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_table("reminders")
    op.drop_table("subscription_states")
    op.drop_table("purchases")

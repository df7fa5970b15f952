"""Editable email templates, follow-up sequences and rules, their timed sends, suppressions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PENDING = sa.text("done_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch_op:
        batch_op.add_column(sa.Column("marketing", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("unsubscribe_url", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("message_id", sa.String(), nullable=True))
    with op.batch_alter_table("purchases") as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("products", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("provider", sa.String(), nullable=True))
    op.create_index(op.f("ix_purchases_email"), "purchases", ["email"])
    op.create_table(
        "access_records",
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("product_name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "product_id", "source", name=op.f("pk_access_records")),
    )
    op.create_table(
        "follow_ups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("to", sa.String(), nullable=False),
        sa.Column("purchase_id", sa.String(), nullable=True),
        sa.Column("offer_id", sa.String(), nullable=True),
        sa.Column("product_id", sa.String(), nullable=True),
        sa.Column("sequence_id", sa.String(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.String(), nullable=True),
        sa.Column("moment", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_ups")),
    )
    op.create_index(op.f("ix_follow_ups_customer_id"), "follow_ups", ["customer_id"])
    # Partial: the scheduler's claim reads only the follow-ups still to do.
    op.create_index("ix_follow_ups_pending", "follow_ups", ["due_at"], sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_table(
        "email_templates",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_email_templates")),
    )
    op.create_table(
        "store_theme",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_theme")),
    )
    op.create_table(
        "email_settings",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("seller_addresses", sa.JSON(), nullable=False),
        sa.Column("notify_each_sale", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_settings")),
    )
    op.create_table(
        "recipients",
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("suppressed_reason", sa.String(), nullable=True),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_recipients")),
        sa.UniqueConstraint("token", name="uq_recipients_token"),
    )
    op.create_table(
        "sequences",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequences")),
    )
    op.create_index(op.f("ix_sequences_offer_id"), "sequences", ["offer_id"])
    op.create_table(
        "follow_up_rules",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=True),
        sa.Column("other_offer_id", sa.String(), nullable=True),
        sa.Column("product_id", sa.String(), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("link_offer_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_up_rules")),
    )
    op.create_index(op.f("ix_follow_up_rules_offer_id"), "follow_up_rules", ["offer_id"])
    op.create_table(
        "last_logins",
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("logged_in_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_last_logins")),
    )


def downgrade() -> None:
    for table in ("last_logins", "follow_up_rules", "sequences", "recipients", "email_settings", "store_theme",
                  "email_templates", "follow_ups", "access_records"):
        op.drop_table(table)
    op.drop_index(op.f("ix_purchases_email"), table_name="purchases")
    with op.batch_alter_table("purchases") as batch_op:
        batch_op.drop_column("provider")
        batch_op.drop_column("products")
        batch_op.drop_column("email")
    with op.batch_alter_table("emails") as batch_op:
        batch_op.drop_column("message_id")
        batch_op.drop_column("unsubscribe_url")
        batch_op.drop_column("marketing")

"""Access by source and policy: customers, purchases, current grants, facts, reviews; a numbered ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 14:00:00.000000

Existing ledger entries are numbered per customer in the order they were made, and each grant
entry becomes a current grant (of its purchase, under the default policy).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GRANT = sa.text("action = 'grant'")
PENDING = sa.text("done_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("ledger_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("offer_name", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=True),
        sa.Column("parent_purchase_id", sa.String(), nullable=True),
        sa.Column("subscription_id", sa.String(), nullable=True),
        sa.Column("access_days", sa.Integer(), nullable=True),
        sa.Column("on_cancel", sa.String(), nullable=False),
        sa.Column("on_pause", sa.String(), nullable=False),
        sa.Column("on_partial_refund", sa.String(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
    )
    op.create_index(op.f("ix_purchases_customer_id"), "purchases", ["customer_id"])
    op.create_index(op.f("ix_purchases_subscription_id"), "purchases", ["subscription_id"])
    op.create_table(
        "access_grants",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("product_name", sa.String(), nullable=False),
        sa.Column("delivery_type", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("purchase_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_because", sa.String(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("cause_event_id", sa.String(), nullable=True),
        sa.Column("cause_event_type", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
        sa.UniqueConstraint("purchase_id", "product_id", name=op.f("uq_access_grants_purchase_id_product_id")),
    )
    op.create_index("ix_access_grants_customer_product", "access_grants", ["customer_id", "product_id"])
    op.create_table(
        "access_facts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("purchase_id", sa.String(), nullable=True),
        sa.Column("grant_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("cause_event_id", sa.String(), nullable=True),
        sa.Column("cause_event_type", sa.String(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_facts")),
    )
    op.create_index(op.f("ix_access_facts_purchase_id"), "access_facts", ["purchase_id"])
    op.create_index(op.f("ix_access_facts_grant_id"), "access_facts", ["grant_id"])
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("grant_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_reviews")),
    )
    op.create_index(op.f("ix_access_reviews_grant_id"), "access_reviews", ["grant_id"])
    op.create_index("ix_access_reviews_pending", "access_reviews", ["due_at"],
                    sqlite_where=PENDING, postgresql_where=PENDING)

    # The partial index is made again after SQLite's batch mode has copied the table.
    op.drop_index("uq_access_ledger_purchase_grant", table_name="access_ledger")
    with op.batch_alter_table("access_ledger") as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("grant_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("actor_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("cause_event_type", sa.String(), nullable=True))
    _number_the_ledger()
    with op.batch_alter_table("access_ledger") as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_access_ledger_customer_id_seq"), ["customer_id", "seq"])
        batch_op.create_index(op.f("ix_access_ledger_grant_id"), ["grant_id"])
    op.create_index("uq_access_ledger_purchase_grant", "access_ledger", ["purchase_id", "product_id"], unique=True,
                    sqlite_where=GRANT, postgresql_where=GRANT)
    _current_access_from_the_ledger()


def _number_the_ledger() -> None:
    op.execute(sa.text(
        "UPDATE access_ledger SET seq = (SELECT COUNT(*) FROM access_ledger AS earlier"
        " WHERE earlier.customer_id = access_ledger.customer_id"
        " AND (earlier.created_at < access_ledger.created_at"
        " OR (earlier.created_at = access_ledger.created_at AND earlier.id <= access_ledger.id)))"))
    op.execute(sa.text("UPDATE access_ledger SET grant_id = id WHERE action = 'grant'"))


def _current_access_from_the_ledger() -> None:
    op.execute(sa.text(
        "INSERT INTO customers (id, email, ledger_seq, updated_at)"
        " SELECT customer_id, MAX(email), MAX(seq), MAX(created_at) FROM access_ledger GROUP BY customer_id"))
    op.execute(sa.text(
        "INSERT INTO purchases (id, customer_id, email, offer_id, offer_name, on_cancel, on_pause, on_partial_refund,"
        " completed_at, event_id)"
        " SELECT purchase_id, MAX(customer_id), MAX(email), '', '', 'period_end', 'keep', 'keep', MIN(created_at),"
        " MAX(cause_event_id) FROM access_ledger WHERE action = 'grant' AND purchase_id IS NOT NULL"
        " GROUP BY purchase_id"))
    # Before this revision the newest entry per product decided, whatever its source.
    op.execute(sa.text(
        "INSERT INTO access_grants (id, customer_id, product_id, product_name, delivery_type, source, purchase_id,"
        " status, reason, granted_at, expires_at, ends_at, ends_because, changed_at, last_seq, cause_event_id)"
        " SELECT g.id, g.customer_id, g.product_id, COALESCE(p.name, g.product_id),"
        " COALESCE(p.delivery_type, 'membership'),"
        " CASE WHEN g.purchase_id IS NULL THEN 'seller' ELSE 'purchase' END, g.purchase_id,"
        " CASE WHEN EXISTS (SELECT 1 FROM access_ledger AS later WHERE later.customer_id = g.customer_id"
        " AND later.product_id = g.product_id AND later.action = 'revoke' AND later.seq > g.seq)"
        " THEN 'revoked' ELSE 'active' END,"
        " g.reason, g.created_at, g.expires_at, g.expires_at,"
        " CASE WHEN g.expires_at IS NULL THEN NULL ELSE 'access period ended' END, g.created_at, g.seq,"
        " g.cause_event_id"
        " FROM access_ledger AS g LEFT JOIN products AS p ON p.id = g.product_id WHERE g.action = 'grant'"))


def downgrade() -> None:
    op.drop_index("uq_access_ledger_purchase_grant", table_name="access_ledger")
    with op.batch_alter_table("access_ledger") as batch_op:
        batch_op.drop_index(op.f("ix_access_ledger_grant_id"))
        batch_op.drop_constraint(op.f("uq_access_ledger_customer_id_seq"), type_="unique")
        batch_op.drop_column("cause_event_type")
        batch_op.drop_column("note")
        batch_op.drop_column("actor_id")
        batch_op.drop_column("grant_id")
        batch_op.drop_column("seq")
    op.create_index("uq_access_ledger_purchase_grant", "access_ledger", ["purchase_id", "product_id"], unique=True,
                    sqlite_where=GRANT, postgresql_where=GRANT)
    op.drop_table("access_reviews")
    op.drop_table("access_facts")
    op.drop_table("access_grants")
    op.drop_table("purchases")
    op.drop_table("customers")

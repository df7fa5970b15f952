"""Customer activity throttled across replicas (the last `CustomerActivity` per customer, kind and
product); the seller's staff and their back-office sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 16:55:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "activity_publications",
        _text("customer_id"), _text("kind"), _text("product_id"), _at("published_at"),
        sa.PrimaryKeyConstraint("customer_id", "kind", "product_id", name=op.f("pk_activity_publications")),
    )
    op.create_table(
        "staff_members",
        _text("id"), _text("email"), _text("name"), _text("role"), _text("password_hash"), _at("created_at"),
        _at("removed_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_members")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_members_email")),
    )
    op.create_table(
        "staff_sessions",
        _text("id"), _text("staff_id"), _at("created_at"), _at("expires_at"), _at("ended_at", True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_members.id"], name=op.f("fk_staff_sessions_staff_id_staff_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
    )
    op.create_index(op.f("ix_staff_sessions_staff_id"), "staff_sessions", ["staff_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_staff_sessions_staff_id"), table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_table("staff_members")
    op.drop_table("activity_publications")

"""What customers open: the last `ContentOpened` per customer, kind and product (the throttle that
holds across replicas), the lessons each customer opened, and the products they completed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=False)


def _at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "activity_publications",
        _text("customer_id"), _text("kind"), _text("product_id"), _at("published_at"),
        sa.PrimaryKeyConstraint("customer_id", "kind", "product_id", name=op.f("pk_activity_publications")),
    )
    op.create_table(
        "lesson_openings",
        _text("customer_id"), _text("lesson_id"), _text("product_id"), _at("opened_at"),
        sa.PrimaryKeyConstraint("customer_id", "lesson_id", name=op.f("pk_lesson_openings")),
    )
    op.create_index(op.f("ix_lesson_openings_product_id"), "lesson_openings", ["product_id"])
    op.create_table(
        "product_completions",
        _text("customer_id"), _text("product_id"), sa.Column("lessons", sa.Integer(), nullable=False),
        _at("completed_at"),
        sa.PrimaryKeyConstraint("customer_id", "product_id", name=op.f("pk_product_completions")),
    )


def downgrade() -> None:
    op.drop_table("product_completions")
    op.drop_index(op.f("ix_lesson_openings_product_id"), table_name="lesson_openings")
    op.drop_table("lesson_openings")
    op.drop_table("activity_publications")

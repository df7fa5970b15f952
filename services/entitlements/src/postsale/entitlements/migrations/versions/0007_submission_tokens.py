"""A back-office form's one-time submission token on what it creates (a grant by hand, a product, a
section, a lesson), unique, so the same form posted twice creates it once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("access_grants", "products", "content_sections", "content_lessons")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("submission", sa.String(), nullable=True))
            batch_op.create_unique_constraint(batch_op.f(f"uq_{table}_submission"), ["submission"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"uq_{table}_submission"), type_="unique")
            batch_op.drop_column("submission")

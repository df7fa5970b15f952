"""The back-office upload form's one-time submission token on the file it stored, unique, so the same
form posted twice stores the file once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("product_files") as batch_op:
        batch_op.add_column(sa.Column("submission", sa.String(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_product_files_submission"), ["submission"])


def downgrade() -> None:
    with op.batch_alter_table("product_files") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_product_files_submission"), type_="unique")
        batch_op.drop_column("submission")

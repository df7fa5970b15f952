"""The refund form's one-time token on each refund it made, unique: a form posted twice refunds once

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refunds') as table:
        table.add_column(sa.Column('submission', sa.String(), nullable=True))
        table.create_unique_constraint(op.f('uq_refunds_submission'), ['submission'])


def downgrade() -> None:
    with op.batch_alter_table('refunds') as table:
        table.drop_constraint(op.f('uq_refunds_submission'), type_='unique')
        table.drop_column('submission')

"""The new-offer form's one-time token on each offer it made, unique: a form posted twice makes one offer

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('offers') as table:
        table.add_column(sa.Column('submission', sa.String(), nullable=True))
        table.create_unique_constraint(op.f('uq_offers_submission'), ['submission'])


def downgrade() -> None:
    with op.batch_alter_table('offers') as table:
        table.drop_constraint(op.f('uq_offers_submission'), type_='unique')
        table.drop_column('submission')

"""What other services did about a purchase, for its timeline; archived products in the catalogue

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'purchase_happenings',
        sa.Column('event_id', sa.String(), nullable=False),
        sa.Column('purchase_id', sa.String(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('service', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('summary', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.create_index('ix_purchase_happenings_purchase_at', 'purchase_happenings', ['purchase_id', 'at'])
    with op.batch_alter_table('catalog_products') as table:
        table.add_column(sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('catalog_products') as table:
        table.drop_column('archived_at')
    op.drop_index('ix_purchase_happenings_purchase_at', table_name='purchase_happenings')
    op.drop_table('purchase_happenings')

"""Customers added by the seller, account emails, last activity, the seller's theme

Where a customer record came from (a purchase or the seller) and the offers the seller asked to
grant, the account emails notifications reports as sent or failed, and each customer's last
login, library visit, lesson and download; the theme of the customer pages.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:53:50.874695
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_emails',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('template', sa.String(), nullable=False),
    sa.Column('to', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('happened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_account_emails'))
    )
    with op.batch_alter_table('account_emails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_emails_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_activity',
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('product_id', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('customer_id', 'kind', name=op.f('pk_customer_activity'))
    )
    op.create_table('themes',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('settings', sa.String(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_themes'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(), server_default='purchase', nullable=False))
        batch_op.add_column(sa.Column('requested_offer_ids', sa.String(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('requested_offer_ids')
        batch_op.drop_column('source')

    op.drop_table('themes')
    op.drop_table('customer_activity')
    with op.batch_alter_table('account_emails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_emails_customer_id'))

    op.drop_table('account_emails')

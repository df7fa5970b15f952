"""The saved card of each subscription and the card-expiry checks and notices; abandoned checkouts
(a recovery row per checkout, the per-offer switch) and the store's settings (the recovery delay)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:36:33.116302
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('store_settings',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('recovery_delay_minutes', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_store_settings'))
    )
    op.create_table('checkout_recoveries',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('checkout_session_id', sa.String(), nullable=False),
    sa.Column('abandoned', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['checkout_session_id'], ['checkout_sessions.id'], name=op.f('fk_checkout_recoveries_checkout_session_id_checkout_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_recoveries')),
    sa.UniqueConstraint('checkout_session_id', name=op.f('uq_checkout_recoveries_checkout_session_id'))
    )
    with op.batch_alter_table('checkout_recoveries', schema=None) as batch_op:
        batch_op.create_index('ix_checkout_recoveries_pending', ['due_at'], unique=False, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    op.create_table('card_expiry_checks',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('payment_method_id', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_card_expiry_checks_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_expiry_checks'))
    )
    with op.batch_alter_table('card_expiry_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_expiry_checks_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_card_expiry_checks_pending', ['due_at'], unique=False, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.create_index('uq_card_expiry_checks_pending_subscription', ['subscription_id'], unique=True, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    op.create_table('card_expiry_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('payment_method_id', sa.String(), nullable=False),
    sa.Column('noticed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_card_expiry_notices_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_expiry_notices')),
    sa.UniqueConstraint('subscription_id', 'payment_method_id', name=op.f('uq_card_expiry_notices_subscription_id_payment_method_id'))
    )
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_recovery_email', sa.Boolean(), nullable=False, server_default=sa.true()))

    with op.batch_alter_table('sandbox_payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_exp_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('card_exp_year', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_sandbox_payments_payment_method_id'), ['payment_method_id'], unique=False)

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_brand', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('card_last4', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('card_exp_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('card_exp_year', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('card_exp_year')
        batch_op.drop_column('card_exp_month')
        batch_op.drop_column('card_last4')
        batch_op.drop_column('card_brand')

    with op.batch_alter_table('sandbox_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_payments_payment_method_id'))
        batch_op.drop_column('card_exp_year')
        batch_op.drop_column('card_exp_month')

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('send_recovery_email')

    op.drop_table('card_expiry_notices')
    with op.batch_alter_table('card_expiry_checks', schema=None) as batch_op:
        batch_op.drop_index('uq_card_expiry_checks_pending_subscription', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index('ix_card_expiry_checks_pending', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_card_expiry_checks_customer_id'))

    op.drop_table('card_expiry_checks')
    with op.batch_alter_table('checkout_recoveries', schema=None) as batch_op:
        batch_op.drop_index('ix_checkout_recoveries_pending', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    op.drop_table('checkout_recoveries')
    op.drop_table('store_settings')

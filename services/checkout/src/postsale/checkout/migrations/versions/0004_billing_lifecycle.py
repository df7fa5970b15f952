"""The billing lifecycle: the schedule of each subscription, charge attempts, refunds, disputes,
self-service switches and the sandbox's simulated clocks and disputes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:02:58.589112
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('simulated_clocks',
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('offset_seconds', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_simulated_clocks'))
    )
    op.create_table('disputes',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=False),
    sa.Column('provider_dispute_id', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_disputes_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('provider_dispute_id', 'purchase_id', name=op.f('uq_disputes_provider_dispute_id_purchase_id'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_purchase_id'), ['purchase_id'], unique=False)

    op.create_table('refunds',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=False),
    sa.Column('provider', sa.String(), nullable=False),
    sa.Column('provider_refund_id', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=True),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_refunds_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('provider_refund_id', name=op.f('uq_refunds_provider_refund_id'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_purchase_id'), ['purchase_id'], unique=False)

    op.create_table('billing_jobs',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_billing_jobs_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_jobs'))
    )
    with op.batch_alter_table('billing_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_jobs_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_billing_jobs_pending', ['due_at'], unique=False, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.create_index('uq_billing_jobs_pending_subscription', ['subscription_id'], unique=True, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    op.create_table('charge_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.String(), nullable=False),
    sa.Column('idempotency_key', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('message', sa.String(), nullable=True),
    sa.Column('next_retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_charge_attempts_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charge_attempts')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_charge_attempts_idempotency_key'))
    )
    with op.batch_alter_table('charge_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_charge_attempts_subscription_id'), ['subscription_id'], unique=False)

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('self_service', sa.JSON(), nullable=False, server_default='{}'))

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscription_id', sa.String(), nullable=True))
        batch_op.create_index(batch_op.f('ix_payments_provider_payment_id'), ['provider_payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_subscription_id'), ['subscription_id'], unique=False)

    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('handled', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.create_index(batch_op.f('ix_provider_events_payment_id'), ['payment_id'], unique=False)

    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('sandbox_payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_keys', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('dispute_status', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('dispute_reported', sa.String(), nullable=True))

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('cancel_actor', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failed_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('retry_at')
        batch_op.drop_column('failures')
        batch_op.drop_column('failed_since')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('cancel_actor')
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('cancel_at')

    with op.batch_alter_table('sandbox_payments', schema=None) as batch_op:
        batch_op.drop_column('dispute_reported')
        batch_op.drop_column('dispute_status')
        batch_op.drop_column('refund_keys')

    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_column('refunded')

    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_events_payment_id'))
        batch_op.drop_column('handled')
        batch_op.drop_column('payload')
        batch_op.drop_column('payment_id')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_payments_provider_payment_id'))
        batch_op.drop_column('subscription_id')

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('self_service')

    with op.batch_alter_table('charge_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_charge_attempts_subscription_id'))

    op.drop_table('charge_attempts')
    with op.batch_alter_table('billing_jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_billing_jobs_pending_subscription', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index('ix_billing_jobs_pending', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_billing_jobs_customer_id'))

    op.drop_table('billing_jobs')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refunds_purchase_id'))

    op.drop_table('refunds')
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disputes_purchase_id'))

    op.drop_table('disputes')
    op.drop_table('simulated_clocks')

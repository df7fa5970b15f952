"""Price models, coupons, carts, order bumps, the upsell funnel, payments and subscriptions

Existing offers become one-time offers; existing attempts keep their one purchase.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 13:40:59.850668
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('carts',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('offer_ids', sa.JSON(), nullable=False),
    sa.Column('post_purchase', sa.JSON(), nullable=False, server_default='{}'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_carts'))
    )
    op.create_table('coupons',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('code', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('percent_off', sa.Integer(), nullable=True),
    sa.Column('amount_off', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(), nullable=True),
    sa.Column('duration', sa.String(), nullable=False),
    sa.Column('duration_periods', sa.Integer(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('redemptions', sa.Integer(), nullable=False),
    sa.Column('offer_ids', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('max_redemptions IS NULL OR redemptions <= max_redemptions', name=op.f('ck_coupons_within_limit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('code', name=op.f('uq_coupons_code'))
    )
    op.create_table('sandbox_payments',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('idempotency_key', sa.String(), nullable=False),
    sa.Column('attempt_id', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('card_last4', sa.String(), nullable=False),
    sa.Column('payment_method_id', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('message', sa.String(), nullable=True),
    sa.Column('refunded', sa.Integer(), nullable=False),
    sa.Column('disputed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_payments')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_sandbox_payments_idempotency_key'))
    )
    op.create_table('coupon_redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.String(), nullable=False),
    sa.Column('checkout_session_id', sa.String(), nullable=False),
    sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkout_session_id'], ['checkout_sessions.id'], name=op.f('fk_coupon_redemptions_checkout_session_id_checkout_sessions')),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_coupon_redemptions_coupon_id_coupons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_redemptions')),
    sa.UniqueConstraint('coupon_id', 'checkout_session_id', name=op.f('uq_coupon_redemptions_coupon_id_checkout_session_id'))
    )
    op.create_table('payments',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('checkout_session_id', sa.String(), nullable=False),
    sa.Column('step', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('provider', sa.String(), nullable=False),
    sa.Column('provider_payment_id', sa.String(), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkout_session_id'], ['checkout_sessions.id'], name=op.f('fk_payments_checkout_session_id_checkout_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('checkout_session_id', 'step', name=op.f('uq_payments_checkout_session_id_step'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('purchase_id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('offer_id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('interval', sa.String(), nullable=False),
    sa.Column('interval_count', sa.Integer(), nullable=False, server_default='1'),
    sa.Column('instalments_total', sa.Integer(), nullable=True),
    sa.Column('instalments_paid', sa.Integer(), nullable=False),
    sa.Column('coupon_code', sa.String(), nullable=True),
    sa.Column('discounted_periods_left', sa.Integer(), nullable=True),
    sa.Column('provider', sa.String(), nullable=False),
    sa.Column('payment_method_id', sa.String(), nullable=True),
    sa.Column('customer_ref', sa.String(), nullable=True),
    sa.Column('trial_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_subscriptions_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('purchase_id', name=op.f('uq_subscriptions_purchase_id'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_customer_id'), ['customer_id'], unique=False)

    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cart_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('order_bump', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('coupon_code', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('chosen_amount', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('amount_due', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('payment_tries', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('bought_before', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('payment_method_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('customer_ref', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('funnel_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('funnel_downsell', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_foreign_key(batch_op.f('fk_checkout_sessions_cart_id_carts'), 'carts', ['cart_id'], ['id'])

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_type', sa.String(), nullable=False, server_default='one_time'))
        batch_op.add_column(sa.Column('interval', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('interval_count', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('trial_days', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('instalments', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('minimum_amount', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('order_bump_offer_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('upsells', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('post_purchase', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('access_policy', sa.JSON(), nullable=False, server_default='{}'))

    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('parent_purchase_id', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('coupon_code', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('subscription_id', sa.String(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_purchases_checkout_session_id'), type_='unique')
        batch_op.create_index(batch_op.f('ix_purchases_parent_purchase_id'), ['parent_purchase_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_purchases_payment_id'), ['payment_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_purchases_checkout_session_id_offer_id'), ['checkout_session_id', 'offer_id'])
        batch_op.create_foreign_key(batch_op.f('fk_purchases_payment_id_payments'), 'payments', ['payment_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_purchases_payment_id_payments'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_purchases_checkout_session_id_offer_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_purchases_payment_id'))
        batch_op.drop_index(batch_op.f('ix_purchases_parent_purchase_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_purchases_checkout_session_id'), ['checkout_session_id'])
        batch_op.drop_column('subscription_id')
        batch_op.drop_column('coupon_code')
        batch_op.drop_column('parent_purchase_id')
        batch_op.drop_column('payment_id')

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('access_policy')
        batch_op.drop_column('post_purchase')
        batch_op.drop_column('upsells')
        batch_op.drop_column('order_bump_offer_id')
        batch_op.drop_column('minimum_amount')
        batch_op.drop_column('instalments')
        batch_op.drop_column('trial_days')
        batch_op.drop_column('interval_count')
        batch_op.drop_column('interval')
        batch_op.drop_column('billing_type')

    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_checkout_sessions_cart_id_carts'), type_='foreignkey')
        batch_op.drop_column('funnel_downsell')
        batch_op.drop_column('funnel_step')
        batch_op.drop_column('customer_ref')
        batch_op.drop_column('payment_method_id')
        batch_op.drop_column('bought_before')
        batch_op.drop_column('payment_tries')
        batch_op.drop_column('amount_due')
        batch_op.drop_column('chosen_amount')
        batch_op.drop_column('coupon_code')
        batch_op.drop_column('order_bump')
        batch_op.drop_column('cart_id')

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_customer_id'))

    op.drop_table('subscriptions')
    op.drop_table('payments')
    op.drop_table('coupon_redemptions')
    op.drop_table('sandbox_payments')
    op.drop_table('coupons')
    op.drop_table('carts')

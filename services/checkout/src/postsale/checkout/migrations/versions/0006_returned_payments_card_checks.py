"""Payments returned because they were not what their attempt charges; a card-expiry check for
each live subscription saved before 0005, which had none

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 17:40:00.000000
"""

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The billings that will still charge their card; a paused one gets its check when it resumes.
CHARGING = ('trialing', 'active', 'past_due')


def upgrade() -> None:
    op.create_table('returned_payments',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('checkout_session_id', sa.String(), nullable=False),
    sa.Column('email', sa.String(), nullable=False),
    sa.Column('provider', sa.String(), nullable=False),
    sa.Column('provider_payment_id', sa.String(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('provider_refund_id', sa.String(), nullable=True),
    sa.Column('message', sa.String(), nullable=True),
    sa.Column('returned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['checkout_session_id'], ['checkout_sessions.id'], name=op.f('fk_returned_payments_checkout_session_id_checkout_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_returned_payments')),
    sa.UniqueConstraint('provider', 'provider_payment_id', name=op.f('uq_returned_payments_provider_provider_payment_id'))
    )
    with op.batch_alter_table('returned_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_returned_payments_checkout_session_id'), ['checkout_session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_returned_payments_email'), ['email'], unique=False)

    _check_cards_saved_before_0005()


def _check_cards_saved_before_0005() -> None:
    """Due at once, as a new card's check is: it reads the card from the provider, then moves
    itself to the warning time (the card-expiry scheduler's polling picks it up)."""
    subscriptions = sa.table('subscriptions', sa.column('id', sa.String()), sa.column('customer_id', sa.String()),
                             sa.column('payment_method_id', sa.String()), sa.column('status', sa.String()))
    checks = sa.table('card_expiry_checks', sa.column('id', sa.String()),
                      sa.column('due_at', sa.DateTime(timezone=True)), sa.column('attempts', sa.Integer()),
                      sa.column('subscription_id', sa.String()), sa.column('customer_id', sa.String()),
                      sa.column('payment_method_id', sa.String()))
    pending = sa.table('card_expiry_checks', sa.column('subscription_id', sa.String()),
                       sa.column('done_at', sa.DateTime(timezone=True)))
    bind = op.get_bind()
    unwatched = bind.execute(sa.select(subscriptions.c.id, subscriptions.c.customer_id, subscriptions.c.payment_method_id)
                             .where(subscriptions.c.payment_method_id.is_not(None),
                                    subscriptions.c.payment_method_id != '',
                                    subscriptions.c.status.in_(CHARGING),
                                    ~sa.exists().where(pending.c.subscription_id == subscriptions.c.id,
                                                       pending.c.done_at.is_(None)))).all()
    now = datetime.now(timezone.utc)
    if unwatched:
        op.bulk_insert(checks, [{'id': f'cx_{uuid.uuid4().hex[:16]}', 'due_at': now, 'attempts': 0,
                                 'subscription_id': row.id, 'customer_id': row.customer_id,
                                 'payment_method_id': row.payment_method_id} for row in unwatched])


def downgrade() -> None:
    # The checks the upgrade added stay: they are ordinary rows of 0005's table.
    with op.batch_alter_table('returned_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_returned_payments_email'))
        batch_op.drop_index(batch_op.f('ix_returned_payments_checkout_session_id'))

    op.drop_table('returned_payments')

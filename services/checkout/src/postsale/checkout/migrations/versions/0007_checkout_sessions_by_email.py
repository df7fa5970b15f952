"""An index of attempts by email and offer, for the abandoned-checkout run's look at later visits

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 19:40:00.000000
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_checkout_sessions_email_offer', 'checkout_sessions', ['email', 'offer_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_checkout_sessions_email_offer', table_name='checkout_sessions')

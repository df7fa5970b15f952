"""Login by email, password reset, change of email, throttles

Single-use login links with one-time codes (and the same for password resets), changes of
email waiting for the new address to confirm them, and the attempts of each throttled subject.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:38:13.116158
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('throttles',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_throttles'))
    )
    op.create_table('email_changes',
    sa.Column('token_sha256', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('new_email', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_email_changes_customer_id_customers')),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_email_changes'))
    )
    with op.batch_alter_table('email_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_changes_customer_id'), ['customer_id'], unique=False)

    op.create_table('login_challenges',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('customer_id', sa.String(), nullable=False),
    sa.Column('purpose', sa.String(), nullable=False),
    sa.Column('token_sha256', sa.String(), nullable=False),
    sa.Column('code_sha256', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('next_url', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_login_challenges_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_challenges')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_login_challenges_token_sha256'))
    )
    with op.batch_alter_table('login_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_challenges_customer_id'), ['customer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('login_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_challenges_customer_id'))

    op.drop_table('login_challenges')
    with op.batch_alter_table('email_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_changes_customer_id'))

    op.drop_table('email_changes')
    op.drop_table('throttles')

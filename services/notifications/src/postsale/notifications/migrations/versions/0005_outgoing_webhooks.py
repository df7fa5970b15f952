"""Outgoing webhooks: the seller's endpoints, their deliveries and each attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:35:00
"""

from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

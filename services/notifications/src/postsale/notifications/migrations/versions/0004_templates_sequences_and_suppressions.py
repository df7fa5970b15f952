"""Editable email templates, follow-up sequences and rules, their timed sends, suppressions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:35:00
"""

from alembic import op  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

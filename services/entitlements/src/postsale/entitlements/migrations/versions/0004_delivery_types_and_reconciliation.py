"""Delivery types and reconciliation: product settings, deliveries and their attempts, files and
download links, license keys, membership content, the products each purchase bought, scheduled runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 15:00:00.000000

Existing products get empty delivery settings; each existing purchase's products are taken from
its grants (the only record of them before this revision).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PENDING = sa.text("done_at IS NULL")


def _id() -> sa.Column:
    return sa.Column("id", sa.String(), nullable=False)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _due_row_columns() -> list[sa.Column]:
    return [_id(), _at("due_at"), _at("done_at", True), sa.Column("attempts", sa.Integer(), nullable=False),
            _text("last_error", True)]


def upgrade() -> None:
    with op.batch_alter_table("products") as batch_op:
        batch_op.add_column(sa.Column("delivery_settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("access_grants") as batch_op:
        batch_op.add_column(sa.Column("download_limit", sa.Integer(), nullable=True))

    op.create_table(
        "purchase_products",
        _text("purchase_id"), _text("product_id"), _text("name"), _text("delivery_type"),
        sa.PrimaryKeyConstraint("purchase_id", "product_id", name=op.f("pk_purchase_products")),
    )
    op.execute(sa.text(
        "INSERT INTO purchase_products (purchase_id, product_id, name, delivery_type)"
        " SELECT purchase_id, product_id, MAX(product_name), MAX(delivery_type) FROM access_grants"
        " WHERE source = 'purchase' AND purchase_id IS NOT NULL GROUP BY purchase_id, product_id"))

    op.create_table(
        "deliveries",
        _id(), _text("customer_id"), _text("email"), _text("product_id"), _text("grant_id"),
        _text("purchase_id", True), _text("delivery_type"), _text("action"), _text("ledger_action"),
        _text("entry_id"), _text("reason"), _text("status"), sa.Column("attempts", sa.Integer(), nullable=False),
        _text("detail", True), sa.Column("payload", sa.Text(), nullable=True), _at("created_at"), _at("updated_at"),
        _at("next_attempt_at", True), _at("finished_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_customer_id"), "deliveries", ["customer_id"])
    op.create_index(op.f("ix_deliveries_grant_id"), "deliveries", ["grant_id"])
    op.create_index(op.f("ix_deliveries_product_id"), "deliveries", ["product_id"])
    op.create_table(
        "delivery_attempts",
        _id(), _text("delivery_id"), sa.Column("attempt", sa.Integer(), nullable=False), _at("started_at"),
        _text("outcome"), sa.Column("status_code", sa.Integer(), nullable=True), _text("detail", True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint("delivery_id", "attempt", name=op.f("uq_delivery_attempts_delivery_id_attempt")),
    )
    op.create_index(op.f("ix_delivery_attempts_delivery_id"), "delivery_attempts", ["delivery_id"])
    op.create_table(
        "delivery_runs",
        *_due_row_columns(), _text("delivery_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_runs")),
    )
    op.create_index(op.f("ix_delivery_runs_delivery_id"), "delivery_runs", ["delivery_id"])
    op.create_index("ix_delivery_runs_pending", "delivery_runs", ["due_at"],
                    sqlite_where=PENDING, postgresql_where=PENDING)

    op.create_table(
        "product_files",
        _id(), _text("product_id"), _text("name"), _text("content_type"), sa.Column("size", sa.BigInteger(), nullable=False),
        _text("sha256"), _text("storage_key"), _at("uploaded_at"), _at("removed_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_files")),
    )
    op.create_index(op.f("ix_product_files_product_id"), "product_files", ["product_id"])
    op.create_table(
        "download_links",
        _id(), _text("token_sha256"), _text("grant_id"), _text("customer_id"), _text("product_id"),
        _text("file_id"), _text("purpose"), _at("issued_at"), _at("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_links")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_download_links_token_sha256")),
    )
    op.create_index(op.f("ix_download_links_grant_id"), "download_links", ["grant_id"])
    op.create_table(
        "downloads",
        _id(), _text("grant_id"), _text("link_id"), _text("file_id"), _text("customer_id"), _text("client", True),
        _at("downloaded_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downloads")),
    )
    op.create_index(op.f("ix_downloads_grant_id"), "downloads", ["grant_id"])

    op.create_table(
        "license_keys",
        _id(), _text("key"), _text("grant_id"), _text("customer_id"), _text("product_id"),
        sa.Column("activation_limit", sa.Integer(), nullable=True), _at("expires_at", True), _at("created_at"),
        _at("revoked_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_keys")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_license_keys_grant_id")),
        sa.UniqueConstraint("key", name=op.f("uq_license_keys_key")),
    )
    op.create_index(op.f("ix_license_keys_customer_id"), "license_keys", ["customer_id"])
    op.create_table(
        "license_activations",
        _id(), _text("license_key_id"), _text("label"), _at("created_at"), _at("deactivated_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_activations")),
    )
    op.create_index(op.f("ix_license_activations_license_key_id"), "license_activations", ["license_key_id"])

    op.create_table(
        "content_sections",
        _id(), _text("product_id"), _text("title"), sa.Column("position", sa.Integer(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_sections")),
    )
    op.create_index(op.f("ix_content_sections_product_id"), "content_sections", ["product_id"])
    op.create_table(
        "content_lessons",
        _id(), _text("section_id"), _text("product_id"), _text("title"), sa.Column("body", sa.Text(), nullable=False),
        _text("video_url", True), _text("audio_url", True), sa.Column("drip_days", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False), _at("created_at"), _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_lessons")),
    )
    op.create_index(op.f("ix_content_lessons_product_id"), "content_lessons", ["product_id"])
    op.create_index(op.f("ix_content_lessons_section_id"), "content_lessons", ["section_id"])

    op.create_table(
        "reconciliation_runs",
        *_due_row_columns(), sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False), sa.Column("repaired", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index("ix_reconciliation_runs_pending", "reconciliation_runs", ["due_at"],
                    sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    for table in ("reconciliation_runs", "content_lessons", "content_sections", "license_activations",
                  "license_keys", "downloads", "download_links", "product_files", "delivery_runs",
                  "delivery_attempts", "deliveries", "purchase_products"):
        op.drop_table(table)
    with op.batch_alter_table("access_grants") as batch_op:
        batch_op.drop_column("download_limit")
    with op.batch_alter_table("products") as batch_op:
        batch_op.drop_column("delivery_settings")

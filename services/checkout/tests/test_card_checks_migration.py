"""Migration 0006 gives each billing saved before card-expiry checks existed (0005) a check, due at
once, when it will still charge its card; none for a paused or ended billing, one without a card,
or one that has its check already."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from postsale.checkout.config import MIGRATIONS_DIR
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migration_connection

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=timezone.utc)


def upgrade(engine, to: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, to)


def test_live_billings_saved_before_0005_get_a_card_check_due_at_once(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'checkout.db'}")
    upgrade(engine, "0005")
    subscriptions = {  # id: (status, payment method)
        "sub_active": ("active", "pm_a"), "sub_trialing": ("trialing", "pm_t"), "sub_past_due": ("past_due", "pm_p"),
        "sub_paused": ("paused", "pm_x"), "sub_cancelled": ("cancelled", "pm_c"), "sub_no_card": ("active", None),
        "sub_watched": ("active", "pm_w"),
    }
    with engine.begin() as db:
        db.execute(text("PRAGMA foreign_keys=OFF"))
        for sub_id, (status, method) in subscriptions.items():
            db.execute(text(
                "INSERT INTO subscriptions (id, purchase_id, customer_id, offer_id, kind, status, amount, currency, "
                "interval, interval_count, instalments_paid, provider, payment_method_id, current_period_start, "
                "current_period_end, failures, created_at) VALUES (:id, :purchase, :customer, 'off_1', "
                "'subscription', :status, 1900, 'EUR', 'month', 1, 0, 'sandbox', :method, :t0, :t0, 0, :t0)"),
                {"id": sub_id, "purchase": f"pur_{sub_id}", "customer": f"cus_{sub_id}", "status": status,
                 "method": method, "t0": T0})
        db.execute(text("INSERT INTO card_expiry_checks (id, due_at, attempts, subscription_id, customer_id, "
                        "payment_method_id) VALUES ('cx_existing', :t0, 0, 'sub_watched', 'cus_sub_watched', 'pm_w')"),
                   {"t0": T0})

    before = datetime.now(timezone.utc)
    upgrade(engine, "0006")
    with engine.connect() as db:
        checks = db.execute(text("SELECT subscription_id, customer_id, payment_method_id, due_at, done_at "
                                 "FROM card_expiry_checks WHERE id != 'cx_existing' ORDER BY subscription_id")).all()
        upgraded = db.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert [(c.subscription_id, c.customer_id, c.payment_method_id) for c in checks] == [
        ("sub_active", "cus_sub_active", "pm_a"), ("sub_past_due", "cus_sub_past_due", "pm_p"),
        ("sub_trialing", "cus_sub_trialing", "pm_t")]
    assert all(c.done_at is None and before.replace(tzinfo=None) <= _naive(c.due_at) for c in checks)
    assert upgraded == "0006"


def _naive(value) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=None) if moment.tzinfo is None else moment.astimezone(timezone.utc).replace(tzinfo=None)

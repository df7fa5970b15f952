"""What other services did about a purchase, kept by checkout from their events for the purchase's
timeline: access changes of the purchase, and the emails whose key names it; others are left out,
and a redelivered event adds no second line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session

from postsale.checkout import happenings
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.contracts import AccessGranted, AccessRevoked, EmailFailed, EmailSent
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
ACCESS = {"customer_id": "cus_1", "email": "ann@example.com", "product_id": "prod_1", "product_name": "Course",
          "delivery_type": "membership", "purchase_id": "pur_1"}


@pytest.fixture
def session(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'checkout.db'}")
    migrate(engine, MIGRATIONS_DIR)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_access_and_emails_of_a_purchase_are_its_timeline_newest_first(session):
    happenings.access_changed(session, AccessGranted(**ACCESS, entry_id="led_1", reason="purchase", actor="system",
                                                     granted_at=T0, expires_at=T0 + timedelta(days=30)), "ev_1")
    happenings.email_told(session, EmailSent(email_key="purchase-confirmation:pur_1", template="purchase_confirmation",
                                             to="ann@example.com", sent_at=T0 + timedelta(minutes=1)), "ev_2")
    happenings.email_told(session, EmailFailed(email_key="seller-sale:pur_1:shop@example.com", template="seller_sale",
                                               to="shop@example.com", attempts=5, error="550 no such user",
                                               failed_at=T0 + timedelta(minutes=2)), "ev_3")
    happenings.access_changed(session, AccessRevoked(**ACCESS, entry_id="led_2", reason="full refund",
                                                     actor="seller", actor_id="stf_1",
                                                     revoked_at=T0 + timedelta(days=1)), "ev_4")
    # Not this purchase's: a grant by hand, an email about something else, and a redelivery.
    happenings.access_changed(session, AccessGranted(**{**ACCESS, "purchase_id": None}, entry_id="led_3",
                                                     reason="granted by the seller", actor="seller", granted_at=T0),
                              "ev_5")
    happenings.email_told(session, EmailSent(email_key="login-link:ev_9", template="login_link", to="ann@example.com",
                                             sent_at=T0), "ev_6")
    happenings.email_told(session, EmailSent(email_key="purchase-confirmation:pur_1", template="purchase_confirmation",
                                             to="ann@example.com", sent_at=T0 + timedelta(minutes=1)), "ev_2")
    session.commit()

    assert [(h.kind, h.summary) for h in happenings.of_purchase(session, "pur_1")] == [
        ("access_revoked", "Access to Course revoked by the seller (stf_1): full refund"),
        ("email_failed", "Email “seller sale” to shop@example.com given up after 5 attempts: 550 no such user"),
        ("email_sent", "Email “purchase confirmation” to ann@example.com accepted by the mail relay"),
        ("access_granted", "Access to Course granted until 01 Apr 2026: purchase"),
    ]

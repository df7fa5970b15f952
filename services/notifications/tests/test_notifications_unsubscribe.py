"""Unsubscribe and suppressions: a marketing email carries one-click unsubscribe (RFC 8058) and
is not sent to a suppressed address; a transactional email always is; an address the relay
refuses for good is suppressed at once, not retried. And the abandoned-checkout reminder: once,
as the seller set it, never after paying."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import message_from_bytes, message_from_string, policy

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from postsale.contracts import CheckoutAbandoned, Money, PurchaseCompleted, PurchasedProduct
from postsale.notifications import handlers, suppressions
from postsale.notifications.adapters.smtp import RelayRefused, SmtpSender
from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import MIGRATIONS_DIR
from postsale.notifications.entrypoints.dispatcher import send_due
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.outbox import OutboxMessage
from postsale.runtime.migrations import migrate
from postsale_local.processes import free_port
from notifications_support import deliver, emails

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTSALE_NOTIFICATIONS_URL", "https://mail.shop.test")
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


def abandoned(checkout_id: str = "att_1", *, email: str = "ann@example.com", **fields) -> CheckoutAbandoned:
    return CheckoutAbandoned(**{"checkout_id": checkout_id, "email": email, "offer_id": "off_1",
                                "offer_name": "Yoga Basics", "amount": Money(amount=4900, currency="EUR"),
                                "resume_url": "https://shop.test/offers/off_1?email=ann%40example.com",
                                "started_at": T0, "abandoned_at": T0 + timedelta(hours=1), **fields})


def bought(at: datetime, *, email: str = "ann@example.com") -> PurchaseCompleted:
    return PurchaseCompleted(purchase_id=f"pur_{at.timestamp()}", customer_id="cus_1", email=email, offer_id="off_1",
                             offer_name="Yoga Basics",
                             products=[PurchasedProduct(product_id="prd_1", name="Yoga", delivery_type="membership")],
                             amount=Money(amount=4900, currency="EUR"), provider="sandbox",
                             provider_payment_id="sbx_1", completed_at=at, new_customer=True)


def test_an_abandoned_checkout_gets_one_reminder_with_its_unsubscribe_link(engine):
    deliver(engine, abandoned())
    deliver(engine, abandoned())
    [email] = [e for e in emails(engine).values() if e.template == "abandoned_checkout"]
    assert (email.key, email.status, email.marketing) == ("abandoned-checkout:att_1", "queued", True)
    assert email.subject == "You left Yoga Basics in your checkout"
    assert "https://shop.test/offers/off_1?email=ann%40example.com" in email.text_body
    assert email.unsubscribe_url.startswith("https://mail.shop.test/unsubscribe/")
    assert email.unsubscribe_url in email.text_body and email.unsubscribe_url in email.html_body


def test_no_reminder_when_the_seller_turned_it_off_or_the_buyer_paid_meanwhile(engine):
    deliver(engine, abandoned("att_off", send_recovery_email=False))
    deliver(engine, bought(T0 + timedelta(minutes=30), email="bob@example.com"))
    deliver(engine, abandoned("att_paid", email="bob@example.com"))
    deliver(engine, bought(T0 - timedelta(days=3), email="cy@example.com"))  # an earlier purchase: still reminded
    deliver(engine, abandoned("att_cy", email="cy@example.com"))
    assert sorted(k for k in emails(engine) if k.startswith("abandoned-checkout:")) == ["abandoned-checkout:att_cy"]


def test_an_unsubscribed_address_gets_no_marketing_email_but_every_transactional_one(engine):
    with Session(engine) as session:
        suppressions.suppress(session, "Ann@Example.com", suppressions.UNSUBSCRIBED)
        session.commit()
    deliver(engine, abandoned())
    deliver(engine, bought(T0))
    queued = emails(engine)
    assert queued["abandoned-checkout:att_1"].status == "suppressed"
    assert queued[f"purchase-confirmation:pur_{T0.timestamp()}"].status == "queued"
    with Session(engine) as session:
        assert [e.key for e in handlers.claim_due_emails(session, limit=10)] == [f"purchase-confirmation:pur_{T0.timestamp()}"]


def test_an_address_the_relay_refuses_for_good_is_suppressed_and_not_retried(engine):
    deliver(engine, bought(T0))
    with Session(engine) as session:
        [email] = handlers.claim_due_emails(session, limit=10)
        handlers.mark_failed_attempt(session, email, "RelayRefused('550 5.1.1 no such user')", 8, refused=True)
        session.commit()
    with Session(engine) as session:
        email = session.exec(select(Email)).one()
        assert (email.status, email.attempts) == ("failed", 1)
        assert suppressions.is_suppressed(session, "ann@example.com")
        failed = [m for m in session.exec(select(OutboxMessage)).all() if m.topic == "notifications.emails.v1"]
        assert len(failed) == 1 and b"550 5.1.1 no such user" in failed[0].value
    deliver(engine, abandoned(started_at=T0 + timedelta(days=1)))  # a later checkout, not paid
    assert emails(engine)["abandoned-checkout:att_1"].status == "suppressed"


class Relay:
    """A real SMTP server that refuses one address for good and keeps the rest."""

    def __init__(self) -> None:
        self.received: list = []
        self.raw: list[bytes] = []  # as sent: the headers of an SMTPUTF8 email are UTF-8
        self.connections: list = []  # the client's address and port, for each email received

    async def handle_RCPT(self, _server, _session, envelope, address, _options):
        if address.startswith("gone@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server, session, envelope):
        self.connections.append(session.peer)
        self.raw.append(envelope.original_content or envelope.content)
        self.received.append(message_from_bytes(self.raw[-1], policy=policy.default))
        return "250 OK"


@pytest.fixture
def relay():
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, SmtpSender("127.0.0.1", port, from_address="Ann's Studio <hello@studio.test>")
    controller.stop()


def test_a_marketing_email_carries_one_click_unsubscribe_and_the_stores_message_id(relay):
    handler, sender = relay
    # Longer than a folded header line: they must arrive exactly as sent, not folded into a leading space.
    key = f"follow-up:seq_{'1' * 16}:pur_{'2' * 16}:3:{'x' * 40}"
    unsubscribe = f"https://mail.shop.test/unsubscribe/{'t' * 90}"
    message_id = sender.send(to="ann@example.com", subject="Hi", text_body="t", html_body="<p>h</p>", key=key,
                             list_unsubscribe=unsubscribe)
    sender.send(to="ann@example.com", subject="Receipt", text_body="t", html_body="<p>h</p>", key="k2")
    marketing, receipt = handler.received
    assert marketing["List-Unsubscribe"] == f"<{unsubscribe}>" and marketing["X-Postsale-Email-Key"] == key
    assert marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert marketing["Message-ID"] == message_id and message_id.endswith("@studio.test>") and marketing["Date"]
    assert receipt["List-Unsubscribe"] is None


def test_an_email_outside_ascii_arrives_as_written():
    handler, port = Relay(), free_port()
    relay = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    relay.start()
    subject, text, html = "Ihr Kauf: Yoga für Anfänger – bestätigt", "Grüße, Jürgen\n" * 40, "<p>Grüße, Jürgen</p>"
    try:
        sender = SmtpSender("127.0.0.1", port, from_address="Café Zoë <hello@studio.test>")
        for to in ("ann@example.com", "jürgen@example.de"):  # the second needs SMTPUTF8
            sender.send(to=to, subject=subject, text_body=text, html_body=html, key=f"k-{to}")
    finally:
        relay.stop()
    assert len(handler.raw) == 2
    for raw, to, message in zip(handler.raw, ("ann@example.com", "jürgen@example.de"), handler.received):
        headers = message_from_string(raw.decode(), policy=policy.default)  # UTF-8 headers read as such
        assert (headers["To"], headers["Subject"], headers["From"].addresses[0].display_name) == (
            to, subject, "Café Zoë")
        parts = [message.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html")]
        assert (parts[0], parts[1].strip()) == (text, html)  # lines end in CRLF on the wire


def test_a_refused_address_raises_relay_refused(relay):
    _, sender = relay
    with pytest.raises(RelayRefused, match="550"):
        sender.send(to="gone@example.com", subject="Hi", text_body="t", html_body="<p>h</p>", key="k")


def test_a_batch_goes_out_on_one_connection_past_an_address_the_relay_refuses(engine, relay):
    handler, sender = relay
    addresses = ["ann@example.com", "gone@example.com", "bob@example.com"]
    for n, address in enumerate(addresses):
        deliver(engine, bought(T0 + timedelta(minutes=n), email=address))
    assert send_due(engine, sender, 8) is False
    assert [m["To"] for m in handler.received] == ["ann@example.com", "bob@example.com"]
    assert len(set(handler.connections)) == 1
    assert {e.to: (e.status, e.attempts) for e in emails(engine).values()} == {
        "ann@example.com": ("sent", 1), "gone@example.com": ("failed", 1), "bob@example.com": ("sent", 1)}
    assert send_due(engine, sender, 8) is False and len(handler.received) == 2


def test_claimed_emails_are_left_to_their_sender_until_the_lease_is_over(engine, monkeypatch):
    deliver(engine, bought(T0))
    with Session(engine) as session:
        [claimed] = [e.key for e in handlers.claim_due_emails(session, limit=10)]
        session.commit()
    with Session(engine) as session:
        assert handlers.claim_due_emails(session, limit=10) == []  # another replica, meanwhile
    # The sender died before it could mark the email: once the lease is over, it falls due again.
    later = handlers.utcnow() + handlers.CLAIM_LEASE + timedelta(seconds=1)
    monkeypatch.setattr(handlers, "utcnow", lambda: later)
    with Session(engine) as session:
        assert [e.key for e in handlers.claim_due_emails(session, limit=10)] == [claimed]

"""The sandbox provider: Stripe's documented test cards with their documented meanings, no money moves.

It keeps its payments in a table of its own (as a provider keeps them on its side), so an
idempotency key yields the same payment, a 3-D Secure challenge can be answered later, and a
refund knows what was paid.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.checkout.adapters.payments.port import (PaymentResult, ProviderDispute, RefundResult, SavedCard,
                                                      WebhookEvent)
from postsale.checkout.adapters.tables import SandboxPayment
from postsale.runtime.clock import utcnow


@dataclass(frozen=True)
class TestCard:
    number: str
    on_session: str  # what a payment on the payment page does: succeeds | declines | authenticates
    off_session: str  # what a later charge of the saved card does: succeeds | declines
    message: str | None = None
    disputed: bool = False

    @property
    def last4(self) -> str:
        return self.number[-4:]


TEST_CARDS = {card.number: card for card in (
    TestCard("4242424242424242", "succeeds", "succeeds"),
    TestCard("4000000000000002", "declines", "declines", "Your card was declined."),
    TestCard("4000000000009995", "declines", "declines", "Your card has insufficient funds."),
    TestCard("4000000000000069", "declines", "declines", "Your card has expired."),
    # Attaches to the customer (a free trial saves it), but every charge fails.
    TestCard("4000000000000341", "declines", "declines", "Your card was declined."),
    TestCard("4000000000000259", "succeeds", "succeeds", disputed=True),
    # Needs 3-D Secure on the payment page; once set up, off-session charges need none.
    TestCard("4000002500003155", "authenticates", "succeeds"),
)}
SAVES_ON_DECLINE = {"4000000000000341"}
BY_LAST4 = {card.last4: card for card in TEST_CARDS.values()}
SUCCEEDS = "4242424242424242"
UNKNOWN_CARD = (f"This is the sandbox: use a test card such as {SUCCEEDS[:4]} {SUCCEEDS[4:8]} {SUCCEEDS[8:12]} "
                f"{SUCCEEDS[12:]}.")
AUTHENTICATION_FAILED = "We could not authenticate your payment. Try again or use another card."
BAD_EXPIRY = "Enter the card's expiry date as MM/YY, e.g. 12/30."
EXPIRED = "Your card has expired."
YEARS_VALID = 4  # a test card given without an expiry date expires in December, this many years on
YEARS_AHEAD = 20  # no card is issued for longer: a later year is a typing error, not a date


def card_expiry(text: str) -> tuple[int, int] | None:
    """The month and year of an expiry date typed as `MM/YY` or `MM/YYYY` (empty: a few years
    on, as a real card's); None when it is not a date."""
    if not text.strip():
        return 12, utcnow().year + YEARS_VALID
    found = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", text)
    if found is None or not 1 <= int(found.group(1)) <= 12:
        return None
    year = int(found.group(2))
    year = year + 2000 if year < 100 else year
    if year > utcnow().year + YEARS_AHEAD:
        return None
    return int(found.group(1)), year


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class SandboxProvider:
    name = "sandbox"
    test_mode = True

    def __init__(self, engine: Engine, *, action_base_url: str) -> None:
        self.engine = engine
        self.action_base_url = action_base_url

    def _result(self, payment: SandboxPayment) -> PaymentResult:
        return PaymentResult(
            status=payment.status, payment_id=payment.id, payment_method_id=payment.payment_method_id,  # type: ignore[arg-type]
            amount=payment.amount, currency=payment.currency, attempt_id=payment.attempt_id, message=payment.message,
            action_url=f"{self.action_base_url}/sandbox/authenticate/{payment.id}"
            if payment.status == "requires_action" else None,
        )

    def _record(self, *, idempotency_key: str, attempt_id: str, amount: int, currency: str, card: TestCard,
                payment_method_id: str, status: str, message: str | None,
                expiry: tuple[int, int] | None = None) -> PaymentResult:
        # The payment is answered from what was just written: nothing to read back after the commit.
        with Session(self.engine, expire_on_commit=False) as session:
            existing = self._by_key(session, idempotency_key)
            if existing is not None:
                return self._result(existing)
            payment = SandboxPayment(
                id=f"sbx_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:24]}", idempotency_key=idempotency_key,
                attempt_id=attempt_id, amount=amount, currency=currency, card_last4=card.last4,
                card_exp_month=expiry[0] if expiry else None, card_exp_year=expiry[1] if expiry else None,
                payment_method_id=payment_method_id, status=status, message=message,
                disputed=card.disputed and status == "succeeded",
                dispute_status="open" if card.disputed and status == "succeeded" else None,
            )
            session.add(payment)
            try:
                session.commit()
            except IntegrityError:  # the same key at the same moment (a double click): one payment
                session.rollback()
                payment = self._by_key(session, idempotency_key)
            return self._result(payment)

    @staticmethod
    def _by_key(session: Session, idempotency_key: str) -> SandboxPayment | None:
        return session.exec(select(SandboxPayment).where(SandboxPayment.idempotency_key == idempotency_key)).first()

    def start_payment(self, *, attempt_id: str, amount: int, currency: str, email: str, idempotency_key: str,
                      details: Mapping[str, str]) -> PaymentResult:
        card = TEST_CARDS.get(_digits(details.get("card_number", "")))
        if card is None:
            return PaymentResult("declined", message=UNKNOWN_CARD)
        expiry = card_expiry(details.get("card_expiry", ""))
        if expiry is None:
            return PaymentResult("declined", message=BAD_EXPIRY)
        now = utcnow()
        if (expiry[1], expiry[0]) < (now.year, now.month):
            return PaymentResult("declined", message=EXPIRED)
        # One saved method per card and expiry date, as a provider saves a renewed card anew.
        method = f"pm_sbx_{card.last4}_{uuid.uuid5(uuid.NAMESPACE_URL, f'{attempt_id}:{expiry}').hex[:12]}"
        if amount == 0:  # a free trial: the card is only saved
            saves = card.on_session != "declines" or card.number in SAVES_ON_DECLINE
            status, message = ("succeeded", None) if saves else ("declined", card.message)
        else:
            status = {"succeeds": "succeeded", "declines": "declined", "authenticates": "requires_action"}[card.on_session]
            message = card.message if status == "declined" else None
        return self._record(idempotency_key=idempotency_key, attempt_id=attempt_id, amount=amount, currency=currency,
                            card=card, payment_method_id=method, status=status, message=message, expiry=expiry)

    def authenticate(self, payment_id: str, *, approved: bool) -> PaymentResult | None:
        """The buyer's answer on the sandbox's 3-D Secure page. None for an unknown payment."""
        with Session(self.engine) as session:
            payment = session.get(SandboxPayment, payment_id)
            if payment is None:
                return None
            if payment.status == "requires_action":
                payment.status = "succeeded" if approved else "declined"
                payment.message = None if approved else AUTHENTICATION_FAILED
                session.add(payment)
                session.commit()
                session.refresh(payment)
            return self._result(payment)

    def payment_result(self, payment_id: str) -> PaymentResult:
        with Session(self.engine) as session:
            payment = session.get(SandboxPayment, payment_id)
            if payment is None:
                return PaymentResult("declined", message="This payment does not exist.")
            return self._result(payment)

    def charge_saved(self, *, payment_method_id: str, customer_ref: str | None, amount: int, currency: str,
                     attempt_id: str, idempotency_key: str) -> PaymentResult:
        parts = payment_method_id.split("_")
        card = BY_LAST4.get(parts[2]) if len(parts) == 4 and parts[:2] == ["pm", "sbx"] else None
        if card is None:
            return PaymentResult("declined", message="This saved card is not one of the sandbox's.")
        status, message = ("succeeded", None) if card.off_session == "succeeds" else ("declined", card.message)
        return self._record(idempotency_key=idempotency_key, attempt_id=attempt_id, amount=amount, currency=currency,
                            card=card, payment_method_id=payment_method_id, status=status, message=message)

    def refund(self, *, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        refund_id = f"sbxre_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:24]}"
        with Session(self.engine) as session:
            payment = session.get(SandboxPayment, payment_id, with_for_update=True)
            if payment is None or payment.status != "succeeded":
                return RefundResult(refund_id, 0, False, "There is no such paid payment to refund.")
            if refund_id in payment.refund_keys:  # the same request again: the same refund
                return RefundResult(refund_id, amount, True)
            if payment.refunded + amount > payment.amount:
                return RefundResult(refund_id, 0, False, "The refund is larger than what is left of the payment.")
            payment.refunded += amount
            payment.refund_keys = [*payment.refund_keys, refund_id]
            session.add(payment)
            session.commit()
        return RefundResult(refund_id, amount, True)

    def saved_card(self, payment_method_id: str) -> SavedCard | None:
        with Session(self.engine) as session:
            saved = session.exec(select(SandboxPayment).where(
                SandboxPayment.payment_method_id == payment_method_id,
                SandboxPayment.card_exp_year.is_not(None))  # type: ignore[union-attr]
                .order_by(SandboxPayment.created_at)).first()
        if saved is None:
            return None
        return SavedCard("visa", saved.card_last4, saved.card_exp_month, saved.card_exp_year)  # every test card is a Visa

    def close_dispute(self, dispute_id: str, *, won: bool) -> bool:
        """The simulator's stand-in for the bank's decision on a dispute; False when none is open."""
        with Session(self.engine) as session:
            payment = session.get(SandboxPayment, dispute_id.removeprefix("dp_"), with_for_update=True)
            if payment is None or payment.dispute_status != "open":
                return False
            payment.dispute_status = "won" if won else "lost"
            session.add(payment)
            session.commit()
        return True

    def pending_events(self) -> list[WebhookEvent]:
        """A dispute of each payment with the 0259 card, and its outcome once closed."""
        with Session(self.engine) as session:
            payments = session.exec(select(SandboxPayment).where(
                SandboxPayment.dispute_status.is_not(None),  # type: ignore[union-attr]
                or_(SandboxPayment.dispute_reported.is_(None),  # type: ignore[union-attr]
                    SandboxPayment.dispute_status != SandboxPayment.dispute_reported)).limit(100)).all()
            return [WebhookEvent(
                f"sbxevt_{p.id}_{p.dispute_status}", f"dispute.{p.dispute_status}",
                dispute=ProviderDispute(f"dp_{p.id}", p.id, p.amount, p.currency, p.dispute_status,  # type: ignore[arg-type]
                                        "fraudulent")) for p in payments]

    def acknowledge(self, event: WebhookEvent) -> None:
        if event.dispute is None:
            return
        with Session(self.engine) as session:
            payment = session.get(SandboxPayment, event.dispute.payment_id)
            if payment is not None:
                payment.dispute_reported = event.dispute.status
                session.add(payment)
                session.commit()

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise ValueError("The sandbox sends no webhooks: its payments complete on the page.")

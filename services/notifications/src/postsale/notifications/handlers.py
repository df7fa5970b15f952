"""Notifications use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlmodel import Session, select

from postsale.contracts import (AccountSetupLinkIssued, EmailChangeRequested, EmailFailed, EmailSent, LoginLinkIssued,
                                PasswordResetRequested, PurchaseCompleted, PurchaseRefunded)
from postsale.notifications import access, billing, rules, sequences, suppressions
from postsale.notifications.adapters.tables import Email, PurchaseRecord
from postsale.notifications.config import SERVICE
from postsale.notifications.emails import email_settings, queue_email, queue_for_sellers
from postsale.runtime.clock import utcnow
from postsale.runtime.db import insert_once
from postsale.runtime.messaging import publish_later
from postsale.runtime.settings import PublicUrls, from_environment

SOURCE = f"/postsale/{SERVICE}"


def on_purchase_completed(session: Session, event: PurchaseCompleted, event_id: str) -> None:
    """Started by `PurchaseCompleted`: the customer's confirmation, the seller's notification of the
    sale, and, for a subscription or payment plan, its standing and reminders. Safe to redeliver."""
    queue_purchase_confirmation(session, event, event_id)
    notify_sellers_of_sale(session, event, event_id)
    remember_purchase(session, event)
    billing.follow_purchase(session, event)
    sequences.plan_sequences(session, event)
    rules.plan_rules(session, event)


def remember_purchase(session: Session, event: PurchaseCompleted) -> None:
    """Keeps what later emails about the purchase name (its refunds, its billing)."""
    insert_once(session, PurchaseRecord(id=event.purchase_id, customer_id=event.customer_id, offer_id=event.offer_id,
                                       offer_name=event.offer_name, subscription_id=event.subscription_id,
                                       on_partial_refund=event.access_policy.on_partial_refund,
                                       completed_at=event.completed_at, email=event.email,
                                       products=[{"product_id": p.product_id, "name": p.name}
                                                 for p in event.products],
                                       provider=event.provider))


def queue_purchase_confirmation(session: Session, event: PurchaseCompleted, _event_id: str) -> None:
    """Started by `PurchaseCompleted`: the confirmation with a login button, unless the offer turned it off."""
    if not event.send_confirmation_email:
        return
    queue_email(session, key=f"purchase-confirmation:{event.purchase_id}", template="purchase_confirmation",
                to=event.email, customer_id=event.customer_id, purchase=event,
                library_url=from_environment(PublicUrls).library_url)


def notify_sellers_of_sale(session: Session, event: PurchaseCompleted, _event_id: str) -> None:
    """Part of `PurchaseCompleted`: "New sale" to each of the seller's addresses, unless the seller
    turned it off (`PUT /admin/email-settings`)."""
    settings = email_settings(session)
    if settings is not None and not settings.notify_each_sale:
        return
    queue_for_sellers(session, key=f"seller-sale:{event.purchase_id}", template="seller_sale", purchase=event)


def queue_refund_confirmation(session: Session, event: PurchaseRefunded, _event_id: str) -> None:
    """Started by `PurchaseRefunded`: tells the customer what came back, and what happens to access
    (when it ends, the purchase's follow-ups stop). Keyed by the refund: each refund has its own email."""
    purchase = session.get(PurchaseRecord, event.purchase_id)
    access_ends = event.full or (purchase is not None and purchase.on_partial_refund == "revoke")
    if access_ends and purchase is not None:
        access.end_purchase_access(session, purchase.id, purchase.customer_id, purchase.product_ids, event.refunded_at)
    queue_email(session, key=f"refund-confirmation:{event.refund_id}", template="refund_confirmation",
                to=event.email, customer_id=event.customer_id, refund=event,
                offer_name=purchase.offer_name if purchase else None, access_ends=access_ends,
                access_kept=not access_ends and purchase is not None)


def queue_account_setup_email(session: Session, event: AccountSetupLinkIssued, event_id: str) -> None:
    """Started by `AccountSetupLinkIssued`: the "Set up your account" email carrying the link.

    Keyed by the purchase the link was issued for, so one purchase sends one such email, however
    often its event is delivered; a link issued without a purchase is keyed by its event.
    """
    purchase_id = _purchase_of(event.url)
    key = f"account-setup:{purchase_id}" if purchase_id else f"account-setup:{event_id}"
    queue_email(session, key=key, template="account_setup", to=event.email, customer_id=event.customer_id,
                url=event.url, email=event.email, expires_at=event.expires_at, reason=event.reason,
                login_url=from_environment(PublicUrls).login_url())


def queue_login_link_email(session: Session, event: LoginLinkIssued, event_id: str) -> None:
    """Started by `LoginLinkIssued`: "Your login link", with the link and the one-time code. One email
    per event, however often it is delivered."""
    queue_email(session, key=f"login-link:{event_id}", template="login_link", to=event.email,
                customer_id=event.customer_id, url=event.url, code=event.code, email=event.email,
                expires_at=event.expires_at, issued_at=event.issued_at, reason=event.reason)


def queue_password_reset_email(session: Session, event: PasswordResetRequested, event_id: str) -> None:
    """Started by `PasswordResetRequested`: "Reset your password", with the link and the code."""
    queue_email(session, key=f"password-reset:{event_id}", template="password_reset", to=event.email,
                customer_id=event.customer_id, url=event.url, code=event.code, email=event.email,
                expires_at=event.expires_at, requested_at=event.requested_at)


def queue_email_change_emails(session: Session, event: EmailChangeRequested, event_id: str) -> None:
    """Started by `EmailChangeRequested`: the confirmation link to the new address, and a notice
    without any link to the current one (so its owner learns of a change they did not ask for)."""
    queue_email(session, key=f"email-change:{event_id}", template="email_change", to=event.new_email,
                customer_id=event.customer_id, url=event.url, new_email=event.new_email, old_email=event.email,
                expires_at=event.expires_at)
    queue_email(session, key=f"email-change-notice:{event_id}", template="email_change_notice", to=event.email,
                customer_id=event.customer_id, new_email=event.new_email, old_email=event.email,
                login_url=from_environment(PublicUrls).login_url())


def _purchase_of(url: str) -> str | None:
    # The event has no purchase id field (yet): accounts puts the purchase in the link's query,
    # as checkout's redirect to the account page does.
    values = parse_qs(urlsplit(url).query).get("purchase")
    return values[0] if values and len(values[0]) <= 100 else None


CLAIM_LEASE = timedelta(seconds=60)
"""How long a claimed email is its sender's: an email whose sender died (or whose mark could not be
committed) is sent again about a minute later. The dispatcher starts no email that its relay's
timeouts could carry past the lease (`entrypoints/dispatcher.py`)."""


def claim_due_emails(session: Session, limit: int) -> list[Email]:
    """Claims queued emails that are due: each falls due again only when `CLAIM_LEASE` is over.

    The caller commits the claim before sending: then it holds no lock while it talks to the relay,
    and replicas (which skip rows being claimed) do not pick the same emails up meanwhile. Sending
    marks each email sent or due again (`mark_sent`, `mark_failed_attempt`); a sender that dies
    first leaves its emails to be sent when their lease is over."""
    emails = list(session.exec(
        select(Email).where(Email.status == "queued", Email.next_attempt_at <= utcnow())
        .order_by(Email.created_at).limit(limit).with_for_update(skip_locked=True)
    ).all())
    lease_over = utcnow() + CLAIM_LEASE
    for email in emails:
        email.next_attempt_at = lease_over
        session.add(email)
    return emails


def mark_sent(session: Session, email: Email, message_id: str | None = None) -> None:
    email.status, email.sent_at, email.attempts, email.last_error = "sent", utcnow(), email.attempts + 1, None
    email.message_id = message_id
    session.add(email)
    publish_later(session, EmailSent(email_key=email.key, template=email.template, to=email.to,
                                     customer_id=email.customer_id, sent_at=email.sent_at), source=SOURCE)


def mark_failed_attempt(session: Session, email: Email, error: str, max_attempts: int, *,
                        refused: bool = False) -> None:
    """Retried with backoff (30 s, 1 min, 2 min, ... capped at 1 h), then given up as failed
    (`EmailFailed`). An address the relay refused for good is not retried, and is suppressed."""
    email.attempts += 1
    email.last_error = error[:2000]
    if refused:
        suppressions.suppress(session, email.to, suppressions.REFUSED, detail=error)
    if refused or email.attempts >= max_attempts:
        email.status = "failed"
        publish_later(session, EmailFailed(email_key=email.key, template=email.template, to=email.to,
                                           customer_id=email.customer_id, attempts=email.attempts, error=email.last_error,
                                           failed_at=utcnow()), source=SOURCE)
    else:
        email.next_attempt_at = utcnow() + timedelta(seconds=min(30 * 2 ** (email.attempts - 1), 3600))
    session.add(email)

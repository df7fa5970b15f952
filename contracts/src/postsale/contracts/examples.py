"""One realistic example of every event: the golden payloads under `contracts/examples/`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from postsale.contracts.base import Event, Money
from postsale.contracts.events import (
    AccessGranted, AccessRestored, AccessRevoked, AccessSuspended, AccountActivated, AccountSetupLinkIssued, Address,
    CustomerActivity, CustomerRegistered, DisputeLost, DisputeOpened, DisputeWon, DownloadLinkIssued, EmailFailed,
    EmailSent, FulfilmentRequested, IntegrationCallFailed, LoginLinkIssued, PasswordResetRequested, PaymentFailed,
    PaymentSucceeded, ProductArchived, ProductPublished, ProductUpdated, PurchaseCompleted, PurchasedProduct,
    PurchaseRefunded, SubscriptionCancellationScheduled, SubscriptionCancellationUndone, SubscriptionCancelled,
    SubscriptionPastDue, SubscriptionPaused, SubscriptionResumed,
)

AT = datetime(2026, 11, 22, 10, 30, tzinfo=timezone.utc)
PRICE = Money(amount=4900, currency="EUR")
CUSTOMER = {"customer_id": "cus_8f2a61c0b9d74e15", "email": "ann.lee@example.com"}
BILLING = {**CUSTOMER, "subscription_id": "sub_3c9e0d8a7b6f4a21", "billing": "subscription",
           "purchase_id": "pur_5d1c9a7e3b2f4c80", "offer_id": "offer_7a2b4c6d8e0f1a3b"}
ACCESS = {**CUSTOMER, "entry_id": "grant_0e4b7d2c9a1f3e56", "product_id": "prod_1a2b3c4d5e6f7a8b",
          "product_name": "The Creator Membership", "delivery_type": "membership", "actor": "system",
          "cause_event_id": "6f1de4a2-3f7c-4a55-9d2b-8a0c1e2f3b4d", "purchase_id": "pur_5d1c9a7e3b2f4c80"}
DISPUTE = {**CUSTOMER, "dispute_id": "dp_2e4f6a8c0b1d3f5a", "purchase_id": "pur_5d1c9a7e3b2f4c80",
           "amount": PRICE, "provider": "stripe"}

EXAMPLES: tuple[Event, ...] = (
    PurchaseCompleted(
        purchase_id="pur_5d1c9a7e3b2f4c80", **CUSTOMER, offer_id="offer_7a2b4c6d8e0f1a3b",
        offer_name="Creator Membership: lifetime access",
        products=[PurchasedProduct(product_id="prod_1a2b3c4d5e6f7a8b", name="The Creator Membership",
                                   delivery_type="membership")],
        amount=PRICE, provider="stripe", provider_payment_id="pi_3Q0a1b2c3d4e5f6g", completed_at=AT,
        order_id="ord_2b4d6f8a0c1e3a5c", coupon_code="LAUNCH20", new_customer=True,
        account_setup_token_sha256="9b74c9897bac770ffc029102a200c5de8f1c1a4b1e6c0f9d6f3e2a1b0c9d8e7f",
    ),
    PurchaseRefunded(refund_id="re_4a6c8e0b2d4f6a8c", purchase_id="pur_5d1c9a7e3b2f4c80", **CUSTOMER,
                     amount=Money(amount=1900, currency="EUR"), total_refunded=Money(amount=1900, currency="EUR"),
                     full=False, reason="goodwill", actor="seller", refunded_at=AT),
    DisputeOpened(**DISPUTE, reason="fraudulent", opened_at=AT),
    DisputeWon(**DISPUTE, closed_at=AT + timedelta(days=30)),
    DisputeLost(**DISPUTE, closed_at=AT + timedelta(days=30)),
    PaymentSucceeded(**BILLING, payment_id="pay_6b8d0f2a4c6e8b0d", kind="renewal", amount=PRICE,
                     period_start=AT, period_end=AT + timedelta(days=30), paid_at=AT),
    PaymentFailed(**{**BILLING, "billing": "payment_plan"}, payment_id="pay_7c9e1a3b5d7f9c1e", kind="instalment",
                  amount=Money(amount=9900, currency="EUR"), instalment_number=2, attempt=1,
                  next_retry_at=AT + timedelta(days=3), failure_message="Your card has insufficient funds.",
                  failed_at=AT),
    SubscriptionPastDue(**BILLING, since=AT, grace_until=AT + timedelta(days=14)),
    SubscriptionCancellationScheduled(**BILLING, effective_at=AT + timedelta(days=12), actor="customer",
                                      reason="customer request", scheduled_at=AT),
    SubscriptionCancellationUndone(**BILLING, actor="customer", undone_at=AT),
    SubscriptionCancelled(**BILLING, effective_at=AT, actor="system", reason="payment failed", cancelled_at=AT),
    SubscriptionPaused(**BILLING, actor="seller", paused_at=AT, resumes_at=AT + timedelta(days=30)),
    SubscriptionResumed(**BILLING, actor="seller", resumed_at=AT),
    ProductPublished(product_id="prod_1a2b3c4d5e6f7a8b", name="The Creator Membership",
                     description="Weekly lessons, the community and every recording.", delivery_type="membership",
                     published_at=AT),
    ProductUpdated(product_id="prod_1a2b3c4d5e6f7a8b", name="The Creator Membership 2027",
                   description="Weekly lessons, the community and every recording.", delivery_type="membership",
                   updated_at=AT),
    ProductArchived(product_id="prod_1a2b3c4d5e6f7a8b", archived_at=AT),
    AccessGranted(**{**ACCESS, "actor": "customer"}, reason="purchase",
                  cause_event_type="postsale.purchase.completed", granted_at=AT),
    AccessRevoked(**ACCESS, reason="full refund", cause_event_type="postsale.purchase.refunded", revoked_at=AT),
    AccessSuspended(**ACCESS, reason="dispute opened", cause_event_type="postsale.dispute.opened", suspended_at=AT),
    AccessRestored(**ACCESS, reason="dispute won", cause_event_type="postsale.dispute.won", restored_at=AT),
    FulfilmentRequested(fulfilment_id="ful_8d0f2b4d6f8a0c2e", purchase_id="pur_5d1c9a7e3b2f4c80", **CUSTOMER,
                        customer_name="Ann Lee", product_id="prod_9f8e7d6c5b4a3f2e", product_name="Studio notebook",
                        kind="goods", quantity=2,
                        shipping_address=Address(name="Ann Lee", line1="Hauptstraße 5", postal_code="10115",
                                                 city="Berlin", country="DE"),
                        requested_at=AT),
    IntegrationCallFailed(call_id="call_9e1a3c5e7a9c1e3a", platform="circle", action="grant", **CUSTOMER,
                          product_id="prod_2b3c4d5e6f7a8b9c", purchase_id="pur_5d1c9a7e3b2f4c80", attempt=3,
                          next_retry_at=AT + timedelta(hours=4), error="HTTP 503 from the platform", failed_at=AT),
    DownloadLinkIssued(link_id="dl_0f2b4d6f8a0c2e4a", **CUSTOMER, product_id="prod_3c4d5e6f7a8b9c0d",
                       product_name="The Pricing Workbook", file_name="pricing-workbook.pdf",
                       url="https://shop.example.com/downloads/dl_0f2b4d6f8a0c2e4a?expires=1795343400&sig=3f9a",
                       expires_at=AT + timedelta(hours=24), downloads_left=5, purchase_id="pur_5d1c9a7e3b2f4c80",
                       issued_at=AT),
    CustomerRegistered(**CUSTOMER, source="purchase", registered_at=AT),
    AccountActivated(**CUSTOMER, first_name="Ann", last_name="Lee", activated_at=AT),
    CustomerActivity(customer_id=CUSTOMER["customer_id"], kind="library_visit", occurred_at=AT),
    AccountSetupLinkIssued(**CUSTOMER, url="https://shop.example.com/setup?token=6a1f0c2d9e8b7a6f",
                           reason="welcome", expires_at=AT + timedelta(days=14), issued_at=AT),
    LoginLinkIssued(**CUSTOMER, url="https://shop.example.com/login/link?token=0b9a8c7d6e5f4a3b", code="482913",
                    expires_at=AT + timedelta(minutes=15), issued_at=AT),
    PasswordResetRequested(**CUSTOMER, url="https://shop.example.com/reset?token=1c0b9a8d7e6f5a4b", code="705126",
                           expires_at=AT + timedelta(hours=1), requested_at=AT),
    EmailSent(email_key="purchase-confirmation:pur_5d1c9a7e3b2f4c80", template="purchase_confirmation",
              to=CUSTOMER["email"], customer_id=CUSTOMER["customer_id"], sent_at=AT),
    EmailFailed(email_key="purchase-confirmation:pur_5d1c9a7e3b2f4c80", template="purchase_confirmation",
                to=CUSTOMER["email"], customer_id=CUSTOMER["customer_id"], attempts=8,
                error="550 mailbox unavailable", failed_at=AT),
)

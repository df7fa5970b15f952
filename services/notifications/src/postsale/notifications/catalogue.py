"""Every email Postsale sends, as the seller sees it in the template editor: what it is, who gets
it, whether it is marketing (unsubscribable) or transactional, and the variables it offers, with
an example value of each for previews and test sends.

An email is a template in `templates/emails/` (`<name>.subject.txt`, `<name>.txt`, `<name>.html`),
so an email added there is listed here too, its variables read from its default template.
The seller's own templates (for follow-ups) are marketing emails with `FOLLOW_UP_VARIABLES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from postsale.contracts import examples
from postsale.notifications.rendering import DEFAULTS, FILES, default_parts, variables_of

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SHOP = "https://shop.example.com"
_EXAMPLES = {type(event).__name__: event for event in examples.EXAMPLES}
_AT = examples.AT
COMMON = {"style": "Inline CSS of the seller's theme: style.heading, style.button, style.link, style.muted.",
          "store": "The store: store.name, store.logo_url (empty when the seller set none).",
          "unsubscribe_url": "The one-click unsubscribe page (marketing emails only; empty otherwise).",
          "preferences_url": "The email preferences page (marketing emails only; empty otherwise)."}


@dataclass(frozen=True)
class Variable:
    description: str
    example: object


@dataclass(frozen=True)
class Spec:
    title: str
    audience: str  # customer | seller
    marketing: bool = False
    variables: dict[str, Variable] = field(default_factory=dict)


def _v(description: str, example: object) -> Variable:
    return Variable(description, example)


_BILLING_URL = _v("The customer's billing page: update the card, cancel, receipts.", f"{SHOP}/billing")
_LIBRARY = _v("The customer's library.", f"{SHOP}/library")
_NAME = _v("The offer's name, or `your subscription` before it is known.", "Creator Membership")
_OFFER = _v("The offer's name (empty before it is known).", "Creator Membership")
FOLLOW_UP_VARIABLES = {
    "email": _v("The customer's email address.", "ann.lee@example.com"),
    "offer_name": _v("The offer the customer bought.", "Creator Membership"),
    "products": _v("What it grants: a list, each with `name`.", [{"name": "The Creator Membership"}]),
    "offer_url": _v("The offer this email links to (a follow-up offer's checkout page).", f"{SHOP}/offers/offer_1"),
    "library_url": _LIBRARY,
    "step": _v("The step of the sequence, from 1 (empty for a rule).", 1),
}
SPECS: dict[str, Spec] = {
    "purchase_confirmation": Spec("Purchase confirmation (switchable per offer)", "customer", variables={
        "purchase": _v("The purchase: offer_name, amount.amount, amount.currency, products (each with name), "
                       "purchase_id, completed_at.", _EXAMPLES["PurchaseCompleted"]),
        "library_url": _LIBRARY}),
    "seller_sale": Spec("The seller's notification of each sale (optional)", "seller", variables={
        "purchase": _v("The purchase, as in the purchase confirmation, with email, customer_id, coupon_code, "
                       "new_customer, trial_ends_at, next_payment_at.", _EXAMPLES["PurchaseCompleted"])}),
    "refund_confirmation": Spec("Refund confirmation", "customer", variables={
        "refund": _v("The refund: amount, total_refunded, full, refunded_at.", _EXAMPLES["PurchaseRefunded"]),
        "offer_name": _OFFER, "access_ends": _v("Access ends with this refund.", True),
        "access_kept": _v("Access is kept (a partial refund).", False)}),
    "account_setup": Spec("Account setup link (welcome with login information)", "customer", variables={
        "url": _v("The single-use setup link.", f"{SHOP}/setup?token=example"),
        "email": _v("The customer's login email.", "ann.lee@example.com"),
        "expires_at": _v("When the link expires.", _AT + timedelta(days=7)),
        "reason": _v("`purchase` or `resend`.", "purchase"), "login_url": _v("The login page.", f"{SHOP}/login")}),
    "login_link": Spec("Login link and code", "customer", variables={
        "url": _v("The single-use login link.", f"{SHOP}/login/link?token=example"),
        "code": _v("The one-time code.", "482913"), "email": _v("The login email.", "ann.lee@example.com"),
        "expires_at": _v("When link and code expire.", _AT + timedelta(minutes=15)),
        "issued_at": _v("When they were asked for.", _AT), "reason": _v("Why: `login`.", "login")}),
    "password_reset": Spec("Password reset", "customer", variables={
        "url": _v("The single-use reset link.", f"{SHOP}/reset?token=example"),
        "code": _v("The one-time code.", "705126"), "email": _v("The login email.", "ann.lee@example.com"),
        "expires_at": _v("When link and code expire.", _AT + timedelta(minutes=30)),
        "requested_at": _v("When the reset was asked for.", _AT)}),
    "email_change": Spec("Confirmation of a new login email", "customer", variables={
        "url": _v("The confirmation link.", f"{SHOP}/email/confirm?token=example"),
        "new_email": _v("The new address.", "ann@new.example.com"),
        "old_email": _v("The current address.", "ann.lee@example.com"),
        "expires_at": _v("When the link expires.", _AT + timedelta(hours=24))}),
    "email_change_notice": Spec("Notice of a login email change, to the old address", "customer", variables={
        "new_email": _v("The new address.", "ann@new.example.com"),
        "old_email": _v("The current address.", "ann.lee@example.com"), "login_url": _v("The login page.", f"{SHOP}/login")}),
    "payment_failed": Spec("Failed payment (dunning)", "customer", variables={
        "payment": _v("The attempt: amount, kind, instalment_number, attempt, next_retry_at, failure_message, "
                      "failed_at, subscription_id.", _EXAMPLES["PaymentFailed"]),
        "name": _NAME, "offer_name": _OFFER, "billing_url": _BILLING_URL}),
    "seller_payment_failed": Spec("The seller's notice of a failed payment", "seller", variables={
        "payment": _v("The attempt, as in the customer's email, with email and customer_id.",
                      _EXAMPLES["PaymentFailed"]), "name": _NAME, "offer_name": _OFFER, "billing_url": _BILLING_URL}),
    "subscription_cancelled": Spec("Subscription ended by dunning", "customer", variables={
        "cancellation": _v("The cancellation: effective_at, reason, cancelled_at.", _EXAMPLES["SubscriptionCancelled"]),
        "name": _NAME, "offer_name": _OFFER, "offer_url": _v("The offer's page, to come back.", f"{SHOP}/offers/offer_1"),
        "billing_url": _BILLING_URL}),
    "renewal_receipt": Spec("Receipt of a renewal or instalment", "customer", variables={
        "payment": _v("The payment: amount, kind, instalment_number, instalments_total, period_start, period_end, "
                      "paid_at.", _EXAMPLES["PaymentSucceeded"]), "name": _NAME, "offer_name": _OFFER,
        "billing_url": _BILLING_URL}),
    "trial_ending": Spec("Trial-ending reminder", "customer", variables={
        "moment": _v("When the trial ends.", _AT + timedelta(days=3)), "name": _NAME, "offer_name": _OFFER,
        "billing": _v("`subscription` or `payment_plan`.", "subscription"),
        "amount": _v("The last payment in cents (empty before one).", None),
        "currency": _v("Its currency.", None), "billing_url": _BILLING_URL}),
    "renewal_reminder": Spec("Reminder before a yearly renewal", "customer", variables={
        "moment": _v("When the renewal is charged.", _AT + timedelta(days=7)), "name": _NAME, "offer_name": _OFFER,
        "billing": _v("`subscription` or `payment_plan`.", "subscription"),
        "amount": _v("The last payment in cents (empty before one).", 19000),
        "currency": _v("Its currency.", "EUR"), "billing_url": _BILLING_URL}),
    "card_expiring": Spec("Card-expiry warning", "customer", variables={
        "card": _v("The card: card_brand, card_last4, card_exp_month, card_exp_year, next_payment_at.",
                   _EXAMPLES["CardExpiring"]), "name": _NAME, "offer_name": _OFFER, "billing_url": _BILLING_URL}),
    "download_link": Spec("Download link", "customer", variables={
        "link": _v("The link: product_name, file_name, url, expires_at, downloads_left.",
                   _EXAMPLES["DownloadLinkIssued"]), "library_url": _LIBRARY}),
    "license_key": Spec("License key", "customer", variables={
        "license": _v("The key: product_name, license_key, max_activations (empty: no limit), expires_at "
                      "(empty: never), purchase_id, issued_at.", _EXAMPLES["LicenseKeyIssued"]),
        "library_url": _LIBRARY}),
    "seller_integration_failed": Spec("The seller's notice of a third-party call that failed for good", "seller",
                                      variables={
        "call": _v("The call: platform, action, email, customer_id, product_id, purchase_id, attempt, error, "
                   "failed_at.", _EXAMPLES["IntegrationCallFailed"]),
        "deliveries_url": _v("The product's third-party calls in the admin API.", f"{SHOP}/admin/products/p/deliveries")}),
    "webhook_endpoint_disabled": Spec("The seller's notice of a webhook endpoint disabled", "seller", variables={
        "endpoint": _v("The endpoint: id, url, description.",
                       {"id": "we_1", "url": "https://crm.example.com/hooks", "description": "CRM"}),
        "reason": _v("Why it was disabled.", "failing for 5 days"), "disabled_at": _v("When.", _AT),
        "failing_since": _v("Since when it failed (empty: unknown).", _AT - timedelta(days=5)),
        "failed": _v("Deliveries now dead letters.", 12), "stopped": _v("Of which still being retried.", 3)}),
    "abandoned_checkout": Spec("Abandoned-checkout reminder (switchable per offer)", "customer", marketing=True,
                               variables={
        "checkout": _v("The checkout: offer_name, amount, email, started_at, abandoned_at.",
                       _EXAMPLES["CheckoutAbandoned"]),
        "resume_url": _v("The offer's checkout with the email filled in.", f"{SHOP}/offers/offer_1?email=ann")}),
    "access_ending": Spec("Access-ending reminder", "customer", variables={
        "product_name": _v("The product.", "The Creator Membership"),
        "ends_at": _v("When access ends.", _AT + timedelta(days=7)), "library_url": _LIBRARY}),
}


def built_in_names() -> list[str]:
    """Every email with a default template, whatever module queues it."""
    suffix = FILES["subject"].format("")
    return sorted(p.name[: -len(suffix)] for p in DEFAULTS.glob(f"*{suffix}"))


def spec_of(name: str) -> Spec:
    """The email's spec; for an email without one (added by another feature, or the seller's own
    template) its variables are read from its template."""
    if name in SPECS:
        return SPECS[name]
    parts = default_parts(name)
    if parts is None:
        return Spec("The seller's own template (follow-ups)", "customer", marketing=True,
                    variables=FOLLOW_UP_VARIABLES)
    found = variables_of(parts) - set(COMMON)
    return Spec(name.replace("_", " ").capitalize(), "seller" if name.startswith("seller_") else "customer",
                variables={v: _v("See the default template.", Placeholder(v)) for v in sorted(found)})


def example_context(name: str) -> dict:
    """Example values of every variable the email offers, for previews and test sends."""
    return {key: variable.example for key, variable in spec_of(name).variables.items()}


class Placeholder:
    """The example value of a variable without a known one: shows as `[name]`, as do its attributes."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> "Placeholder":
        if attribute.startswith("_") or attribute in ("unsafe_callable", "alters_data"):
            raise AttributeError(attribute)  # what the sandbox asks of a value is not a variable
        return Placeholder(f"{self._name}.{attribute}")

    def __call__(self, *_args, **_kwargs) -> "Placeholder":
        return self

    def __str__(self) -> str:
        return f"[{self._name}]"

    def __iter__(self):
        return iter(())

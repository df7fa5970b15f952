"""The offer and coupon forms of the back office: what the seller typed, read into the arguments of
`offers.create_offer`, `offers.update_offer` and `offers.create_coupon`, which hold the rules.

Reading a form only turns text into values (amounts in the currency's minor units, whole numbers,
choices among the listed ones) and leaves out what the chosen price model has no use for (an
interval on a one-time offer), so switching models never fails on a field the seller left behind.
Whatever it refuses comes back as a sentence, with every typed value kept for the form.
"""

from __future__ import annotations

from datetime import datetime, time, timezone

from pydantic import ValidationError
from starlette.datastructures import FormData

from postsale.checkout.adapters.tables import Coupon, Offer
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.billing_cycle import SelfService
from postsale.checkout.domain.coupons import CouponRules, normalize_code
from postsale.checkout.domain.funnel import MAX_STEPS, FunnelStep
from postsale.checkout.domain.money import AmountError, NotAnAmount, format_major, format_money, read_major
from postsale.checkout.domain.post_purchase import MAX_URL_LENGTH, PostPurchase
from postsale.checkout.offers import MAX_NAME_LENGTH
from postsale.contracts import AccessPolicy
from postsale.runtime.backoffice import FormError, is_submission_token, submission_token

BILLING_TYPES = {"one_time": "One-time payment", "subscription": "Subscription", "payment_plan": "Payment plan",
                 "pay_what_you_want": "Pay what you want", "free": "Free"}
INTERVALS = {"day": "Day", "week": "Week", "month": "Month", "year": "Year"}
DESTINATIONS = {"library": "The customer's library", "thank_you": "A thank-you page",
                "landing_page": "A landing page of mine (URL below)"}
ON_CANCEL = {"period_end": "At the end of the paid period", "now": "As soon as the cancellation is asked for"}
ON_PAUSE = {"keep": "Keeps access", "suspend": "Access suspended while paused"}
ON_PARTIAL_REFUND = {"keep": "Keeps access", "revoke": "Access revoked"}
DURATIONS = {"once": "The first payment only", "repeating": "A number of payments", "forever": "Every payment"}
CHECKS = ("require_password", "skip_account_page", "send_welcome_email", "self_service_cancel",
          "self_service_update_card", "self_service_receipts", "send_confirmation_email", "send_recovery_email")
MAX_TEXT = 200  # every short field; the landing page URL has its own limit
MAX_PRODUCTS = 50
SHOWN_STEPS = 3  # empty upsell rows on a form, beyond those in use


def blank_offer_form() -> dict:
    """A new offer's form: Postsale's defaults, and the one-time token of this form."""
    return {"submission": submission_token(), "name": "", "billing_type": "one_time", "price": "", "currency": "EUR", "interval": "month",
            "interval_count": "1", "trial_days": "0", "instalments": "3", "minimum": "", "product_ids": [],
            "order_bump_offer_id": "", "upsells": [], "destination": "library", "landing_page_url": "",
            "access_days": "", "on_cancel": "period_end", "on_pause": "keep", "on_partial_refund": "keep",
            **{name: name not in ("require_password", "skip_account_page") for name in CHECKS}}


def offer_form(offer: Offer) -> dict:
    """The form as the offer stands."""
    post, policy, service = offer.post_purchase, AccessPolicy(**offer.access_policy), SelfService(**offer.self_service)
    return {
        "name": offer.name, "billing_type": offer.billing_type,
        "price": format_major(offer.price_amount, offer.currency), "currency": offer.currency,
        "interval": offer.interval or "month", "interval_count": str(offer.interval_count),
        "trial_days": str(offer.trial_days), "instalments": str(offer.instalments or 3),
        "minimum": format_major(offer.minimum_amount, offer.currency) if offer.minimum_amount is not None else "",
        "product_ids": list(offer.product_ids), "order_bump_offer_id": offer.order_bump_offer_id or "",
        "upsells": [(s["offer_id"], s.get("downsell_offer_id") or "") for s in offer.upsells],
        "destination": post.get("destination", "library"), "landing_page_url": post.get("landing_page_url") or "",
        "access_days": str(policy.access_days or ""), "on_cancel": policy.on_cancel, "on_pause": policy.on_pause,
        "on_partial_refund": policy.on_partial_refund,
        "require_password": post.get("require_password", False), "skip_account_page": post.get("skip_account_page", False),
        "send_welcome_email": post.get("send_welcome_email", True), "self_service_cancel": service.cancel,
        "self_service_update_card": service.update_card, "self_service_receipts": service.receipts,
        "send_confirmation_email": offer.send_confirmation_email, "send_recovery_email": offer.send_recovery_email,
    }


def upsell_rows(form: dict) -> list[tuple[int, str, str]]:
    """The funnel's rows on the form: those in use and a few empty ones, up to the funnel's limit."""
    steps = list(form["upsells"])
    shown = min(MAX_STEPS, max(SHOWN_STEPS, len(steps) + 1))
    steps += [("", "")] * (shown - len(steps))
    return [(i + 1, up, down) for i, (up, down) in enumerate(steps[:shown])]


def _text(data: FormData, name: str) -> str:
    value = data.get(name, "")
    value = value.strip() if isinstance(value, str) else ""
    if "\x00" in value:
        raise FormError("The form holds a NUL character; type the values again.")
    return value


def _whole(text: str, label: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not low <= int(text) <= high:
        raise FormError(f"{label} must be a whole number from {low} to {high}.")
    return int(text)


def _choice(text: str, choices: dict, label: str) -> str:
    if text not in choices:
        raise FormError(f"Choose {label} from the list.")
    return text


def _amount(text: str, currency: str, label: str) -> int:
    """An amount as typed ("49", "49.00" or "49,00"), or FormError saying what to type instead."""
    try:
        return read_major(text, currency)
    except NotAnAmount as exc:
        raise FormError(f"Enter {label} as an amount in {currency or 'the currency'}, such as 49 or 49.00.") from exc
    except AmountError as exc:
        raise FormError(f"{label[:1].upper()}{label[1:]}: {exc}") from exc


def read_offer_form(data: FormData) -> dict:
    """The values typed, as the form shows them again (long values cut, so a page never echoes a
    megabyte); `offer_arguments` then reads them."""
    # Cut one past each limit: what is too long is still refused, by the rules that know the limit.
    form = {name: _text(data, name)[:(MAX_URL_LENGTH if name == "landing_page_url" else MAX_TEXT) + 1]
            for name in ("name", "billing_type", "price", "currency", "interval", "interval_count", "trial_days",
                         "instalments", "minimum", "order_bump_offer_id", "destination", "landing_page_url",
                         "access_days", "on_cancel", "on_pause", "on_partial_refund")}
    products = [p for p in data.getlist("product_ids") if isinstance(p, str)]
    if any("\x00" in p for p in products):
        raise FormError("The form holds a NUL character; type the values again.")
    form["product_ids"] = list(dict.fromkeys(p[:100] for p in products[:MAX_PRODUCTS + 1]))
    form["upsells"] = [(_text(data, f"upsell_{i}")[:100], _text(data, f"downsell_{i}")[:100])
                       for i in range(1, MAX_STEPS + 1)]
    form["upsells"] = [row for row in form["upsells"] if row != ("", "")]
    form.update({name: name in data for name in CHECKS})
    submission = _text(data, "submission")
    form["submission"] = submission if is_submission_token(submission) else ""
    return form


def offer_arguments(form: dict) -> dict:
    """The keyword arguments of `offers.create_offer` / `update_offer`; FormError when a value is
    not one the form offers or not a number where one is needed."""
    if len(form["name"]) > MAX_NAME_LENGTH:
        raise FormError(f"The name is at most {MAX_NAME_LENGTH} characters.")
    if len(form["product_ids"]) > MAX_PRODUCTS:
        raise FormError(f"An offer sells at most {MAX_PRODUCTS} products.")
    kind = _choice(form["billing_type"], BILLING_TYPES, "the price model")
    currency = form["currency"].upper()
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise FormError("The currency is a three-letter code, such as EUR or USD.")
    recurring = kind in ("subscription", "payment_plan")
    terms = BillingTerms(
        type=kind, amount=0 if kind == "free" else _amount(form["price"], currency, "the price"), currency=currency,
        interval=_choice(form["interval"], INTERVALS, "the billing interval") if recurring else None,  # type: ignore[arg-type]
        interval_count=_whole(form["interval_count"], "The interval count", 1, 365) if recurring else 1,
        trial_days=_whole(form["trial_days"] or "0", "The free trial", 0, 365) if kind == "subscription" else 0,
        instalments=_whole(form["instalments"], "The number of instalments", 2, 60) if kind == "payment_plan" else None,
        minimum=_amount(form["minimum"] or "0", currency, "the minimum") if kind == "pay_what_you_want" else None)
    steps = []
    for number, (up, down) in enumerate(form["upsells"], start=1):
        if not up:
            raise FormError(f"Upsell step {number} has a downsell but no upsell: a downsell is shown when its "
                              f"upsell is declined.")
        steps.append(FunnelStep(up, down or None))
    destination = _choice(form["destination"], DESTINATIONS, "where the buyer goes after paying")
    try:
        policy = AccessPolicy(
            access_days=_whole(form["access_days"], "The access duration (days)", 1, 36500) if form["access_days"] else None,
            on_cancel=_choice(form["on_cancel"], ON_CANCEL, "when a cancelled subscription loses access"),
            on_pause=_choice(form["on_pause"], ON_PAUSE, "what a pause does to access"),
            on_partial_refund=_choice(form["on_partial_refund"], ON_PARTIAL_REFUND, "what a partial refund does"))
    except ValidationError as exc:  # the choices above are the contract's: kept in step by the tests
        raise FormError("The access settings are not valid.") from exc
    return {
        "name": form["name"], "terms": terms, "product_ids": form["product_ids"],
        "order_bump_offer_id": form["order_bump_offer_id"] or None, "upsells": steps,
        "post_purchase": PostPurchase(
            require_password=form["require_password"], skip_account_page=form["skip_account_page"],
            send_welcome_email=form["send_welcome_email"], destination=destination,  # type: ignore[arg-type]
            landing_page_url=(form["landing_page_url"] or None) if destination == "landing_page" else None),
        "access_policy": policy,
        "self_service": SelfService(cancel=form["self_service_cancel"], update_card=form["self_service_update_card"],
                                    receipts=form["self_service_receipts"]),
        "send_confirmation_email": form["send_confirmation_email"], "send_recovery_email": form["send_recovery_email"],
    }


# --- coupons ----------------------------------------------------------------------------------

COUPON_FIELDS = ("coupon_code", "coupon_kind", "percent_off", "amount_off", "duration", "duration_periods",
                 "expires_on", "max_redemptions")


def blank_coupon_form() -> dict:
    return {"coupon_code": "", "coupon_kind": "percent", "percent_off": "", "amount_off": "", "duration": "once",
            "duration_periods": "", "expires_on": "", "max_redemptions": ""}


def read_coupon_form(data: FormData) -> dict:
    return {name: _text(data, name)[:MAX_TEXT + 1] for name in COUPON_FIELDS}


def coupon_rules(form: dict, offer: Offer) -> CouponRules:
    """A coupon for this one offer, a fixed amount off in its currency; `create_coupon` checks the rest."""
    kind = _choice(form["coupon_kind"], {"percent": "", "fixed": ""}, "the kind of discount")
    duration = _choice(form["duration"], DURATIONS, "which payments the discount applies to")
    expires_at = None
    if form["expires_on"]:
        try:
            expires_at = datetime.combine(datetime.strptime(form["expires_on"], "%Y-%m-%d").date(), time(23, 59, 59),
                                          tzinfo=timezone.utc)
        except ValueError as exc:
            raise FormError("Enter the last day the coupon works as a date, such as 2026-12-31.") from exc
    return CouponRules(
        code=normalize_code(form["coupon_code"]), kind=kind,  # type: ignore[arg-type]
        percent_off=_whole(form["percent_off"], "The percent off", 1, 100) if kind == "percent" else None,
        amount_off=_amount(form["amount_off"], offer.currency, "the amount off") if kind == "fixed" else None,
        currency=offer.currency if kind == "fixed" else None, duration=duration,  # type: ignore[arg-type]
        duration_periods=_whole(form["duration_periods"], "The number of payments", 1, 120)
        if duration == "repeating" else None,
        expires_at=expires_at,
        max_redemptions=_whole(form["max_redemptions"], "The most uses", 1, 999_999) if form["max_redemptions"] else None,
        offer_ids=(offer.id,))


def describe_coupon(coupon: Coupon) -> str:
    """`20% off the first payment` / `5.00 EUR off every payment`."""
    off = f"{coupon.percent_off}% off" if coupon.kind == "percent" else \
        f"{format_money(coupon.amount_off or 0, coupon.currency or '')} off"
    when = {"once": "the first payment", "forever": "every payment",
            "repeating": f"the first {coupon.duration_periods} payments"}[coupon.duration]
    return f"{off} {when}"

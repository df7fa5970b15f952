"""The back office's offer pages as a seller uses them, over HTTP without a browser: the list, a new
offer with its price model and upsell funnel, the offer's page with its checkout link, saving
changes, coupons; what support may only look at; and forms refused with a message, changing nothing.
Also the `update_offer` use case's own rules."""

from __future__ import annotations

import html
import logging
import re
import secrets
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from postsale.checkout import offers
from postsale.checkout.adapters.tables import CatalogProduct, Cart, CheckoutSession, Coupon, Offer, Purchase, Subscription
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.domain.billing import BillingTerms
from postsale.checkout.domain.funnel import FunnelStep
from postsale.checkout.entrypoints.app import create_app
from postsale.checkout.errors import CheckoutError
from postsale.runtime.migrations import migrate
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import FormBrowser, StaffTokens

pytestmark = pytest.mark.unit
ADMIN_TOKEN = "admin-token-for-the-tests"
CHECKOUT = "http://checkout.test"


class Browser(FormBrowser):
    """A staff member's browser: asks for pages, and sends each form with its CSRF token."""

    csrf_page = "/admin/dashboard"


class Store:
    """Checkout's app on a migrated SQLite database, without Kafka (no lifespan)."""

    def __init__(self, tmp_path, monkeypatch) -> None:
        for name, value in {"CHECKOUT_DATABASE_URL": f"sqlite:///{tmp_path / 'checkout.db'}",
                            "CHECKOUT_ADMIN_TOKEN": ADMIN_TOKEN, "CHECKOUT_SECRET_KEY": "secret-key-for-the-tests",
                            "POSTSALE_CHECKOUT_URL": CHECKOUT}.items():
            monkeypatch.setenv(name, value)
        handlers = logging.getLogger().handlers[:]
        self.app = create_app()  # it sets up JSON logs on the root logger: put pytest's back afterwards
        logging.getLogger().handlers[:] = handlers
        migrate(self.app.state.engine, MIGRATIONS_DIR)
        self.staff = StaffTokens()
        self.staff.install(self.app)
        with self.session() as session:
            session.add(CatalogProduct(id="prod_course", name="Video course", delivery_type="membership"))
            session.add(CatalogProduct(id="prod_book", name="Workbook", delivery_type="download"))
            session.add(CatalogProduct(id="prod_seat", name="Workshop seat", delivery_type="none"))
            session.commit()

    def session(self) -> Session:
        return Session(self.app.state.engine)

    def browser(self, role: str | None = "owner") -> Browser:
        browser = Browser(self.app, follow_redirects=False)
        browser.headers["Accept"] = "text/html"
        if role:
            browser.cookies.set(STAFF_COOKIE, self.staff.token(role))
        return browser

    def api(self, path: str):
        return TestClient(self.app).get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def offer_count(self) -> int:
        with self.session() as session:
            return session.exec(select(func.count()).select_from(Offer)).one()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return Store(tmp_path, monkeypatch)


def offer_form(**fields) -> dict:
    """The new offer form as a seller leaves it: a one-time offer of the course, defaults elsewhere,
    with the form's one-time token (a new one for each form)."""
    form = {"submission": secrets.token_urlsafe(18), "name": "Course", "billing_type": "one_time", "price": "49.00", "currency": "EUR", "interval": "month",
            "interval_count": "1", "trial_days": "0", "instalments": "3", "minimum": "", "product_ids": "prod_course",
            "order_bump_offer_id": "", "destination": "library", "landing_page_url": "", "access_days": "",
            "on_cancel": "period_end", "on_pause": "keep", "on_partial_refund": "keep", "send_welcome_email": "on",
            "self_service_cancel": "on", "self_service_update_card": "on", "self_service_receipts": "on",
            "send_confirmation_email": "on", "send_recovery_email": "on"}
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


def created_id(answer) -> str:
    assert answer.status_code == 303, answer.text
    return re.fullmatch(r"/admin/offers/(offer_\w+)/edit\?done=created", answer.headers["location"]).group(1)


def text(answer) -> str:
    return html.unescape(answer.text)


def test_a_stranger_is_sent_to_the_staff_login(store):
    for path in ("/admin/offers", "/admin/offers/new", "/admin/dashboard"):
        sent = store.browser(None).get(path)
        assert sent.status_code == 303 and sent.headers["location"].startswith("http://127.0.0.1:8003/admin/login?next=")
    refused = store.browser(None).post("/admin/offers/new", data=offer_form(), csrf=False)
    assert refused.status_code in (303, 403) and store.offer_count() == 0


def test_a_new_offer_form_posted_twice_makes_one_offer(store):
    owner = store.browser("owner")
    page = owner.get("/admin/offers/new")
    # Each product says how it is delivered in the words of the product form.
    assert "(hosted membership, prod_course)" in page.text and "(fulfilled by you, prod_seat)" in page.text
    token = re.search(r'name="submission" value="([\w-]+)"', page.text).group(1)
    first = created_id(owner.post("/admin/offers/new", data=offer_form(submission=token)))
    again = created_id(owner.post("/admin/offers/new", data=offer_form(submission=token)))  # a double click
    assert again == first and store.offer_count() == 1
    # Without its token (a page from before, a made-up post) the form comes back, and nothing is made.
    refused = owner.post("/admin/offers/new", data=offer_form(submission=None, name="Other"))
    assert refused.status_code == 422 and "This form came without its one-time token" in text(refused)
    assert 'value="Other"' in refused.text and store.offer_count() == 1
    assert created_id(owner.post("/admin/offers/new", data=offer_form(
        name="Other", submission=re.search(r'name="submission" value="([\w-]+)"', refused.text).group(1))))
    assert store.offer_count() == 2


def test_the_owner_creates_an_offer_with_an_upsell_funnel_and_shares_its_link(store):
    owner = store.browser("owner")
    assert "No offers yet" in owner.get("/admin/offers").text
    form = owner.get("/admin/offers/new")
    assert form.status_code == 200
    for field in ('name="name"', 'name="billing_type"', 'name="price"', 'name="product_ids"', 'name="upsell_1"',
                  'name="downsell_1"', 'name="order_bump_offer_id"', 'for="upsell_1"', "Video course"):
        assert field in form.text

    upsell = created_id(owner.post("/admin/offers/new", data=offer_form(name="Coaching call", price="99",
                                                                         product_ids="prod_book")))
    downsell = created_id(owner.post("/admin/offers/new", data=offer_form(name="Short call", price="29.50")))
    bump = created_id(owner.post("/admin/offers/new", data=offer_form(name="Workbook", price="9")))
    page = owner.get("/admin/offers/new")
    assert f'<option value="{upsell}">Coaching call · 99.00 EUR</option>' in page.text

    main = created_id(owner.post("/admin/offers/new", data=offer_form(
        name="Membership", billing_type="subscription", price="19", interval="month", trial_days="14",
        order_bump_offer_id=bump, upsell_1=upsell, downsell_1=downsell, access_days="365", on_cancel="now",
        send_recovery_email=None, product_ids=["prod_course", "prod_book"])))
    created = owner.get(f"/admin/offers/{main}/edit?done=created")
    assert created.status_code == 200
    assert "The offer was created" in created.text and 'role="status"' in created.text
    link = f"{CHECKOUT}/offers/{main}"
    assert re.search(rf'<input id="checkout-link" type="text" readonly value="{link}" data-checkout-link>', created.text)
    assert '<label for="checkout-link">' in created.text and "data-copy-for" in created.text
    assert "19.00 EUR a month after a 14-day free trial" in created.text
    assert f'<option value="{upsell}" selected>' in created.text

    # The JSON admin API answers for the same offer, as it did before the pages came.
    offer = store.api(f"/admin/offers/{main}").json()
    assert offer["billing"] == {"type": "subscription", "interval": "month", "interval_count": 1, "trial_days": 14,
                                "instalments": None, "minimum": None}
    assert offer["upsells"] == [{"offer_id": upsell, "downsell_offer_id": downsell}]
    assert offer["order_bump_offer_id"] == bump and offer["product_ids"] == ["prod_course", "prod_book"]
    assert offer["access_policy"]["access_days"] == 365 and offer["access_policy"]["on_cancel"] == "now"
    assert offer["send_recovery_email"] is False and offer["send_confirmation_email"] is True
    assert offer["checkout_url"] == link

    listed = owner.get("/admin/offers")
    assert f'data-offer-id="{main}"' in listed.text and "Order bump; 1 upsell step" in listed.text
    assert "Video course, Workbook" in listed.text


def test_the_owner_saves_changes_and_sees_them(store):
    owner = store.browser("owner")
    offer_id = created_id(owner.post("/admin/offers/new", data=offer_form()))
    saved = owner.post(f"/admin/offers/{offer_id}/edit", data=offer_form(
        name="Course, second edition", price="59.90", destination="landing_page",
        landing_page_url="https://store.test/welcome", skip_account_page="on", self_service_receipts=None))
    assert saved.status_code == 303 and saved.headers["location"] == f"/admin/offers/{offer_id}/edit?done=saved"
    page = owner.get(saved.headers["location"])
    assert "Your changes were saved" in page.text and "Course, second edition" in page.text
    assert 'value="59.90"' in page.text and 'value="https://store.test/welcome"' in page.text
    offer = store.api(f"/admin/offers/{offer_id}").json()
    assert offer["price"] == {"amount": 5990, "currency": "EUR"} and offer["self_service"]["receipts"] is False
    assert offer["post_purchase"]["destination"] == "landing_page" and offer["post_purchase"]["skip_account_page"]


def test_support_sees_offers_read_only_and_cannot_change_them(store):
    offer_id = created_id(store.browser("owner").post("/admin/offers/new", data=offer_form()))
    support = store.browser("support")
    listed = support.get("/admin/offers")
    assert listed.status_code == 200 and f'data-offer-id="{offer_id}"' in listed.text
    assert "data-new-offer" not in listed.text
    page = support.get(f"/admin/offers/{offer_id}/edit")
    assert page.status_code == 200 and "data-read-only" in page.text and " disabled>" in page.text
    assert "Save the offer" not in page.text and "data-coupon-form" not in page.text
    assert f"{CHECKOUT}/offers/{offer_id}" in page.text  # the link is for everyone to share
    assert support.get("/admin/offers/new").status_code == 403
    for path, form in ((f"/admin/offers/{offer_id}/edit", offer_form(price="1")), ("/admin/offers/new", offer_form()),
                       (f"/admin/offers/{offer_id}/coupons", {"coupon_code": "FREE", "coupon_kind": "percent",
                                                               "percent_off": "100", "duration": "once"})):
        refused = support.post(path, data=form)
        assert refused.status_code == 403 and "Only the store's owner may do this" in text(refused)
    assert store.api(f"/admin/offers/{offer_id}").json()["price"]["amount"] == 4900 and store.offer_count() == 1


@pytest.mark.parametrize(("fields", "message"), [
    ({"price": "forty"}, "Enter the price as an amount in EUR"),
    ({"price": "²"}, "Enter the price as an amount in EUR"),  # a digit to str.isdigit, not to int()
    ({"price": "1,000"}, "The price: “1,000” has 3 decimals and EUR has 2"),
    ({"price": "1.000,00"}, "one decimal mark at most and no separator"),
    ({"price": "49.50", "currency": "JPY"}, "JPY has no decimals"),
    ({"price": "0"}, "The price must be more than 0."),
    ({"currency": "EURO"}, "The currency is a three-letter code"),
    ({"currency": "XYZ"}, "is not an ISO 4217 currency code"),
    ({"name": ""}, "An offer needs a name"),
    ({"name": "x" * 201}, "The name is at most 200 characters."),
    ({"name": "Nul\x00name"}, "NUL character"),
    ({"product_ids": None}, "Choose at least one product"),
    ({"product_ids": "prod_unknown"}, "unknown product id(s): prod_unknown"),
    ({"billing_type": "payment_plan", "instalments": "1"}, "The number of instalments must be a whole number from 2 to 60."),
    ({"billing_type": "subscription", "interval": "fortnight"}, "Choose the billing interval from the list."),
    ({"billing_type": "bartering"}, "Choose the price model from the list."),
    ({"downsell_1": "offer_x"}, "Upsell step 1 has a downsell but no upsell"),
    ({"upsell_1": "offer_unknown"}, "unknown offer id(s): offer_unknown"),
    ({"destination": "landing_page", "landing_page_url": "ftp://x"}, "The landing page needs an http(s) URL"),
    ({"skip_account_page": "on"}, "can only be skipped when the buyer goes on to a landing page"),
    ({"access_days": "0"}, "The access duration (days) must be a whole number from 1 to 36500."),
])
def test_a_refused_form_says_why_keeps_what_was_typed_and_creates_nothing(store, fields, message):
    answer = store.browser("owner").post("/admin/offers/new", data=offer_form(**fields))
    assert answer.status_code == 422 and message in text(answer)
    assert 'role="alert"' in answer.text and 'name="name"' in answer.text
    if fields.get("price"):
        assert f'value="{fields["price"]}"' in answer.text
    assert store.offer_count() == 0


def test_a_price_typed_with_a_decimal_comma_is_that_price(store):
    owner = store.browser("owner")
    offer_id = created_id(owner.post("/admin/offers/new", data=offer_form(price="10,50")))
    assert store.api(f"/admin/offers/{offer_id}").json()["price"]["amount"] == 1050
    yen = created_id(owner.post("/admin/offers/new", data=offer_form(price="1500", currency="JPY")))
    assert store.api(f"/admin/offers/{yen}").json()["price"] == {"amount": 1500, "currency": "JPY"}
    added = owner.post(f"/admin/offers/{offer_id}/coupons", data={
        "coupon_code": "FIVE", "coupon_kind": "fixed", "amount_off": "2,50", "duration": "once"})
    assert added.status_code == 303 and "2.50 EUR off the first payment" in owner.get(added.headers["location"]).text
    refused = owner.post(f"/admin/offers/{offer_id}/coupons", data={
        "coupon_code": "BIG", "coupon_kind": "fixed", "amount_off": "1,000", "duration": "once"})
    assert refused.status_code == 422 and "The amount off: “1,000” has 3 decimals" in text(refused)


def test_an_upsell_must_be_a_one_time_offer_in_the_same_currency(store):
    owner = store.browser("owner")
    monthly = created_id(owner.post("/admin/offers/new", data=offer_form(billing_type="subscription")))
    dollars = created_id(owner.post("/admin/offers/new", data=offer_form(currency="USD")))
    for add_on, message in ((monthly, "must be a one-time offer"), (dollars, "must be priced in EUR")):
        refused = owner.post("/admin/offers/new", data=offer_form(name="Main", upsell_1=add_on))
        assert refused.status_code == 422 and message in text(refused)
    main = created_id(owner.post("/admin/offers/new", data=offer_form(name="Main")))
    itself = owner.post(f"/admin/offers/{main}/edit", data=offer_form(name="Main", order_bump_offer_id=main))
    assert itself.status_code == 422 and "cannot be its own order bump" in text(itself)
    assert store.offer_count() == 3


def test_a_form_without_its_token_changes_nothing(store):
    owner = store.browser("owner")
    assert owner.post("/admin/offers/new", data=offer_form(), csrf=False).status_code == 403
    offer_id = created_id(owner.post("/admin/offers/new", data=offer_form()))
    assert owner.post(f"/admin/offers/{offer_id}/edit", data=offer_form(price="1"), csrf=False).status_code == 403
    assert store.api(f"/admin/offers/{offer_id}").json()["price"]["amount"] == 4900


def test_a_missing_offer_is_a_page_that_says_so(store):
    for path in ("/admin/offers/offer_nope/edit", f"/admin/offers/{'x' * 200}/edit"):
        missing = store.browser("support").get(path)
        assert missing.status_code == 404 and "This page does not exist" in missing.text
    assert store.browser("owner").post("/admin/offers/offer_nope/edit", data=offer_form()).status_code == 404
    assert store.api("/admin/offers/offer_nope").json() == {"detail": "no offer offer_nope"}


def test_the_list_paginates(store):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with store.session() as session:
        for n in range(55):
            session.add(Offer(id=f"offer_{n:02d}", name=f"Offer {n:02d}", price_amount=100, currency="EUR",
                              product_ids=["prod_course"], created_at=start + timedelta(minutes=n)))
        session.commit()
    owner = store.browser("support")
    first = owner.get("/admin/offers")
    assert first.text.count("data-offer-id=") == 50 and "Offer 54" in first.text and "Offer 04" not in first.text
    assert 'href="/admin/offers?page=2" rel="next"' in first.text
    second = owner.get("/admin/offers", params={"page": "2"})
    assert second.text.count("data-offer-id=") == 5 and "Offer 00" in second.text and 'rel="prev"' in second.text
    for page in ("0", "x", "²", "99999999"):
        assert owner.get("/admin/offers", params={"page": page}).status_code == 200


def test_the_owner_adds_a_coupon_for_the_offer(store):
    owner = store.browser("owner")
    offer_id = created_id(owner.post("/admin/offers/new", data=offer_form()))
    assert "No coupon applies to this offer" in owner.get(f"/admin/offers/{offer_id}/edit").text
    added = owner.post(f"/admin/offers/{offer_id}/coupons", data={
        "coupon_code": "spring-20", "coupon_kind": "percent", "percent_off": "20", "duration": "once",
        "expires_on": "2030-04-30", "max_redemptions": "100"})
    assert added.status_code == 303
    page = owner.get(added.headers["location"])
    assert "The coupon was added" in page.text and 'data-coupon-code="SPRING-20"' in page.text
    assert "20% off the first payment" in page.text and "30 Apr 2030" in page.text and "0 of 100" in page.text
    fixed = owner.post(f"/admin/offers/{offer_id}/coupons", data={
        "coupon_code": "FIVE", "coupon_kind": "fixed", "amount_off": "5", "duration": "once"})
    assert fixed.status_code == 303 and "5.00 EUR off the first payment" in owner.get(fixed.headers["location"]).text

    for form, message in (({"coupon_code": "spring-20", "percent_off": "10"}, "exists already"),
                          ({"coupon_code": "X", "percent_off": "10"}, "A code is 2 to 40 letters"),
                          ({"coupon_code": "HALF", "percent_off": "150"}, "The percent off must be a whole number"),
                          ({"coupon_code": "DATE", "percent_off": "5", "expires_on": "tomorrow"}, "as a date")):
        refused = owner.post(f"/admin/offers/{offer_id}/coupons",
                             data={"coupon_kind": "percent", "duration": "once", **form})
        assert refused.status_code == 422 and message in text(refused) and "data-coupon-error" in refused.text
    with store.session() as session:
        assert sorted(c.code for c in session.exec(select(Coupon)).all()) == ["FIVE", "SPRING-20"]


# --- the update use case ----------------------------------------------------------------------


def terms(**fields) -> BillingTerms:
    return BillingTerms(**{"type": "one_time", "amount": 4900, "currency": "EUR", **fields})


def sell_subscription(session: Session, offer: Offer, status: str = "active") -> None:
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    session.flush()  # the offer first: the attempt refers to it
    checkout = CheckoutSession(id=f"cs_{uuid.uuid4().hex[:8]}", offer_id=offer.id, email="ann@example.com",
                               status="paid")
    purchase = Purchase(id=f"pur_{uuid.uuid4().hex[:8]}", checkout_session_id=checkout.id, customer_id="cus_1",
                        email="ann@example.com", offer_id=offer.id, amount=offer.price_amount, currency=offer.currency,
                        provider="sandbox", provider_payment_id="pay_1")
    session.add_all([checkout, purchase])
    session.flush()
    session.add(Subscription(id=f"sub_{uuid.uuid4().hex[:8]}", purchase_id=purchase.id, customer_id="cus_1",
                             offer_id=offer.id, kind="subscription", status=status, amount=offer.price_amount,
                             currency=offer.currency, interval="month", interval_count=1, provider="sandbox",
                             current_period_start=now, current_period_end=now + timedelta(days=31)))
    session.flush()


def test_update_keeps_live_subscriptions_on_their_terms_but_takes_a_new_price(store):
    with store.session() as session:
        offer = offers.create_offer(session, name="Club", terms=terms(type="subscription", interval="month"),
                                    product_ids=["prod_course"])
        sell_subscription(session, offer)
        offers.update_offer(session, offer, name="Club+", terms=terms(type="subscription", interval="month",
                                                                      amount=5900), product_ids=["prod_course"])
        assert (offer.name, offer.price_amount) == ("Club+", 5900)
        with pytest.raises(CheckoutError, match="stay as they are while any lasts"):
            offers.update_offer(session, offer, name="Club", terms=terms(type="subscription", interval="year"),
                                product_ids=["prod_course"])
        for subscription in session.exec(select(Subscription)).all():
            subscription.status = "cancelled"
        yearly = offers.update_offer(session, offer, name="Club", terms=terms(type="subscription", interval="year"),
                                     product_ids=["prod_course"])
        assert yearly.interval == "year"


def test_update_keeps_an_add_on_or_a_cart_offer_fit_for_its_place(store):
    with store.session() as session:
        upsell = offers.create_offer(session, name="Call", terms=terms(amount=9900), product_ids=["prod_book"])
        session.flush()
        main = offers.create_offer(session, name="Main", terms=terms(), product_ids=["prod_course"],
                                   upsells=[FunnelStep(upsell.id)])
        session.flush()
        with pytest.raises(CheckoutError, match=f"is the order bump or an upsell of {main.id}"):
            offers.update_offer(session, upsell, name="Call", terms=terms(type="subscription", interval="month"),
                                product_ids=["prod_book"])
        with pytest.raises(CheckoutError, match="must stay a one-time offer in EUR"):
            offers.update_offer(session, upsell, name="Call", terms=terms(currency="USD"), product_ids=["prod_book"])
        assert offers.update_offer(session, upsell, name="Call", terms=terms(amount=100),
                                   product_ids=["prod_book"]).price_amount == 100
        session.add(Cart(id="cart_1", name="Bundle", offer_ids=[main.id]))
        session.flush()
        with pytest.raises(CheckoutError, match="sold in the cart"):
            offers.update_offer(session, main, name="Main", terms=terms(type="pay_what_you_want", minimum=0),
                                product_ids=["prod_course"], upsells=[FunnelStep(upsell.id)])
        with pytest.raises(CheckoutError, match="cannot be its own"):
            offers.update_offer(session, main, name="Main", terms=terms(), product_ids=["prod_course"],
                                upsells=[FunnelStep(main.id)])
        session.rollback()


def test_an_archived_product_stays_in_its_offers_and_no_new_offer_takes_it(store):
    from postsale.checkout import catalog
    from postsale.contracts import ProductArchived, ProductUpdated

    owner = store.browser("owner")
    kept = created_id(owner.post("/admin/offers/new", data=offer_form(product_ids=["prod_book"])))
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with store.session() as session:
        catalog.archive_in_catalog(session, ProductArchived(product_id="prod_book", archived_at=at), "ev_1")
        session.commit()

    assert "Workbook" not in owner.get("/admin/offers/new").text
    refused = owner.post("/admin/offers/new", data=offer_form(product_ids=["prod_book"]))
    assert refused.status_code == 422 and "Workbook is archived" in text(refused)
    assert "Workbook" in owner.get(f"/admin/offers/{kept}/edit").text  # the offer that had it keeps it
    assert owner.post(f"/admin/offers/{kept}/edit", data=offer_form(product_ids=["prod_book"])).status_code == 303

    with store.session() as session:  # brought back, and renamed on the way
        catalog.update_catalog(session, ProductUpdated(product_id="prod_book", name="Workbook, 2nd edition",
                                                        delivery_type="download", updated_at=at), "ev_2")
        session.commit()
    assert "Workbook, 2nd edition" in owner.get("/admin/offers/new").text
    assert owner.post("/admin/offers/new", data=offer_form(product_ids=["prod_book"])).status_code == 303

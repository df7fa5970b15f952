"""The sales funnel on the sandbox provider: price models, coupons, the order bump, one-click
upsells and downsells, and never charging twice. Real services, broker, PostgreSQL and SMTP."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import (create_offer, create_product, eventually, follow_page, log_in, log_out, pay, set_up_account,
                           start_checkout)

pytestmark = pytest.mark.e2e
SANDBOX = pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
BOTH_PROVIDERS = pytest.mark.parametrize("suite", ["postgresql", "stripe"], indirect=True)
CARD = {"card_number": "4242 4242 4242 4242"}


def new_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def purchases(suite, email: str) -> list[dict]:
    with suite.admin("checkout") as checkout:
        return checkout.get("/admin/purchases", params={"email": email}).json()


def purchase_detail(suite, purchase_id: str) -> dict:
    with suite.admin("checkout") as checkout:
        return checkout.get(f"/admin/purchases/{purchase_id}").json()


def access(suite, customer_id: str, product_id: str) -> bool:
    with suite.admin("entitlements") as entitlements:
        answer = entitlements.get("/admin/access", params={"customer_id": customer_id, "product_id": product_id})
        return answer.status_code == 200 and answer.json()["has_access"]


def products(suite, *names: str) -> list[str]:
    return [create_product(suite, f"{name} {uuid.uuid4().hex[:6]}") for name in names]


@SANDBOX
def test_a_free_offer_needs_no_card_and_still_grants_and_emails(suite, smtp_inbox):
    [guide] = products(suite, "Free guide")
    offer = create_offer(suite, name="Free guide", product_ids=[guide], price={"amount": 0, "currency": "EUR"},
                         billing={"type": "free"})
    email, browser = new_email("fay"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    page = browser.get(payment_url)
    assert "Get it for free" in page.text and 'name="card_number"' not in page.text
    got = browser.post(f"{payment_url}/pay", data={})
    assert got.status_code == 303 and got.headers["location"].startswith(f"{suite.url('accounts')}/setup?")
    [purchase] = purchases(suite, email)
    assert (purchase["price"], purchase["provider"], purchase["provider_payment_id"]) == (
        {"amount": 0, "currency": "EUR"}, "none", "")
    assert eventually(lambda: access(suite, purchase["customer_id"], guide))
    smtp_inbox.wait_for(lambda m: m["To"] == email and "Free guide" in m["Subject"])


@SANDBOX
def test_a_subscription_with_a_trial_saves_the_card_and_charges_nothing_yet(suite):
    [club] = products(suite, "Club")
    offer = create_offer(suite, name="Club", product_ids=[club], price={"amount": 1900, "currency": "EUR"},
                         billing={"type": "subscription", "interval": "month", "trial_days": 14})
    assert offer["price_description"] == "19.00 EUR a month after a 14-day free trial"
    email, browser = new_email("sid"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert "Start the free trial" in browser.get(payment_url).text
    assert browser.post(f"{payment_url}/pay", data=CARD).status_code == 303
    [purchase] = purchases(suite, email)
    detail = purchase_detail(suite, purchase["id"])
    assert purchase["price"]["amount"] == 0
    assert detail["subscription"]["status"] == "trialing"
    assert detail["subscription"]["amount"] == {"amount": 1900, "currency": "EUR"}
    assert detail["subscription"]["trial_end"] is not None
    assert eventually(lambda: access(suite, purchase["customer_id"], club))


@SANDBOX
def test_a_payment_plan_charges_the_first_instalment(suite):
    [course] = products(suite, "Course")
    offer = create_offer(suite, name="Course in 3", product_ids=[course], price={"amount": 9900, "currency": "EUR"},
                         billing={"type": "payment_plan", "interval": "month", "instalments": 3})
    email, browser = new_email("pia"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert "3 payments of 99.00 EUR a month" in browser.get(payment_url).text
    browser.post(f"{payment_url}/pay", data=CARD)
    [purchase] = purchases(suite, email)
    detail = purchase_detail(suite, purchase["id"])
    assert purchase["price"]["amount"] == 9900
    assert (detail["subscription"]["kind"], detail["subscription"]["instalments_paid"],
            detail["subscription"]["instalments_total"]) == ("payment_plan", 1, 3)
    assert [p["amount"]["amount"] for p in detail["payments"]] == [9900]


@SANDBOX
def test_pay_what_you_want_takes_the_buyers_amount_above_the_minimum(suite):
    [album] = products(suite, "Album")
    offer = create_offer(suite, name="Album", product_ids=[album], price={"amount": 1500, "currency": "EUR"},
                         billing={"type": "pay_what_you_want", "minimum": 500})
    email, browser = new_email("pat"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert 'value="15.00"' in browser.get(payment_url).text
    too_little = browser.post(f"{payment_url}/pay", data={**CARD, "amount": "4.99"})
    assert too_little.status_code == 422 and "The least you can pay is 5.00 EUR." in too_little.text
    assert purchases(suite, email) == []
    browser.post(f"{payment_url}/pay", data={**CARD, "amount": "12.50"})
    assert [p["price"]["amount"] for p in purchases(suite, email)] == [1250]


@BOTH_PROVIDERS
def test_a_coupon_shows_the_new_price_before_paying_and_bad_codes_say_why(suite, stripe_test_mode):
    [course] = products(suite, "Course")
    offer = create_offer(suite, name="Course", product_ids=[course])
    code = f"LAUNCH{uuid.uuid4().hex[:6].upper()}"
    with suite.admin("checkout") as checkout:
        created = checkout.post("/admin/coupons", json={"code": code.lower(), "percent_off": 20,
                                                        "offer_ids": [offer["id"]], "max_redemptions": 5})
        assert created.status_code == 201, created.text
        expired = checkout.post("/admin/coupons", json={"code": f"OLD{code}", "amount_off": 500, "currency": "EUR",
                                                        "expires_at": "2020-01-01T00:00:00Z"})
        assert expired.status_code == 201
    email, browser = new_email("cole"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)

    unknown = browser.post(f"{payment_url}/coupon", data={"code": "NOPE"})
    assert unknown.status_code == 422 and "The code NOPE does not exist." in unknown.text
    old = browser.post(f"{payment_url}/coupon", data={"code": f"old{code}"})
    assert old.status_code == 422 and f"The code OLD{code} has expired." in old.text
    applied = browser.post(f"{payment_url}/coupon", data={"code": code.lower()})
    assert applied.status_code == 200
    assert "−9.80 EUR" in applied.text and "Pay <span id=\"total\">39.20 EUR</span>" in applied.text

    pay(browser, suite, payment_url, stripe=stripe_test_mode)
    [purchase] = purchases(suite, email)
    assert (purchase["price"]["amount"], purchase["coupon_code"]) == (3920, code)
    with suite.admin("checkout") as checkout:
        [counted] = [c for c in checkout.get("/admin/coupons").json() if c["code"] == code]
    assert counted["redemptions"] == 1


@SANDBOX
def test_two_buyers_racing_for_the_last_redemption_cannot_both_get_it(suite):
    [course] = products(suite, "Course")
    offer = create_offer(suite, name="Course", product_ids=[course])
    code = f"LAST{uuid.uuid4().hex[:6].upper()}"
    with suite.admin("checkout") as checkout:
        checkout.post("/admin/coupons", json={"code": code, "amount_off": 1000, "currency": "EUR",
                                              "max_redemptions": 1}).raise_for_status()
    buyers = [(new_email(name), httpx.Client(timeout=20)) for name in ("ray", "rex")]
    urls = []
    for email, browser in buyers:
        url = start_checkout(browser, suite, offer["id"], email)
        assert browser.post(f"{url}/coupon", data={"code": code}).status_code == 200
        urls.append(url)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda pair: pair[0][1].post(f"{pair[1]}/pay", data=CARD), zip(buyers, urls)))
    assert sorted(a.status_code for a in answers) == [303, 422]
    refused = next(a for a in answers if a.status_code == 422)
    assert f"The code {code} has been used up." in refused.text
    paid = [p for email, _ in buyers for p in purchases(suite, email)]
    assert [p["price"]["amount"] for p in paid] == [3900]


@BOTH_PROVIDERS
def test_order_bump_and_a_funnel_accept_decline_accept_downsell(suite, smtp_inbox, stripe_test_mode):
    course, workbook, coaching, masterclass, replay = products(suite, "Course", "Workbook", "Coaching",
                                                               "Masterclass", "Replay")
    bump = create_offer(suite, name="Workbook", product_ids=[workbook], price={"amount": 1500, "currency": "EUR"})
    up1 = create_offer(suite, name="Coaching call", product_ids=[coaching], price={"amount": 9900, "currency": "EUR"})
    up2 = create_offer(suite, name="Masterclass", product_ids=[masterclass], price={"amount": 19900, "currency": "EUR"})
    down2 = create_offer(suite, name="Masterclass replay", product_ids=[replay],
                         price={"amount": 4900, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=[course], order_bump_offer_id=bump["id"],
                         upsells=[{"offer_id": up1["id"]}, {"offer_id": up2["id"], "downsell_offer_id": down2["id"]}])
    email, browser = new_email("una"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    checkout_id = payment_url.rsplit("/", 1)[1]
    page = browser.get(payment_url)
    assert "Yes, add <strong>Workbook</strong> for 15.00 EUR" in page.text
    assert 'data-with="64.00 EUR"' in page.text

    paid = pay(browser, suite, payment_url, stripe=stripe_test_mode, order_bump="on")
    assert paid.headers["location"] == f"/checkout/{checkout_id}/upsell"
    upsell = browser.get(f"{payment_url}/upsell")
    assert "Coaching call" in upsell.text and 'value="0:up"' in upsell.text
    accepted = browser.post(f"{payment_url}/upsell", data={"position": "0:up", "decision": "accept"})
    assert accepted.status_code == 303
    # A second click on the same button (or a stale tab) names a step the buyer left: nothing happens.
    browser.post(f"{payment_url}/upsell", data={"position": "0:up", "decision": "accept"})
    assert "Masterclass" in browser.get(f"{payment_url}/upsell").text
    browser.post(f"{payment_url}/upsell", data={"position": "1:up", "decision": "decline"})
    downsell = browser.get(f"{payment_url}/upsell")
    assert "Masterclass replay" in downsell.text and 'value="1:down"' in downsell.text
    done = browser.post(f"{payment_url}/upsell", data={"position": "1:down", "decision": "accept"})
    after_funnel = browser.get(suite.url("checkout") + done.headers["location"])
    assert after_funnel.headers["location"].startswith(f"{suite.url('accounts')}/setup?")

    bought = {p["offer_id"]: p for p in purchases(suite, email)}
    assert set(bought) == {offer["id"], bump["id"], up1["id"], down2["id"]}
    primary = purchase_detail(suite, bought[offer["id"]]["id"])
    assert [p["kind"] for p in primary["payments"]] == ["checkout"]
    assert primary["payments"][0]["amount"] == {"amount": 6400, "currency": "EUR"}
    assert {c["offer_id"] for c in primary["upsells"]} == {bump["id"], up1["id"], down2["id"]}
    assert all(c["parent_purchase_id"] == primary["id"] for c in primary["upsells"])
    upsell_payment = purchase_detail(suite, bought[up1["id"]]["id"])["payments"]
    assert [(p["kind"], p["amount"]["amount"]) for p in upsell_payment] == [(f"upsell:{up1['id']}", 9900)]

    created = set_up_account(browser, suite, after_funnel.headers["location"])
    assert created.status_code == 303
    library = eventually(lambda: (p := browser.get(f"{suite.url('entitlements')}/library")).status_code == 200
                         and all(name in p.text for name in ("Course", "Workbook", "Coaching", "Replay")) and p)
    assert "Masterclass " not in library.text.replace("Masterclass replay", "")


@SANDBOX
def test_double_click_reload_and_two_tabs_never_charge_twice(suite):
    [course] = products(suite, "Course")
    up = create_offer(suite, name="Extra", product_ids=products(suite, "Extra"),
                      price={"amount": 900, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=[course], upsells=[{"offer_id": up["id"]}])
    email = new_email("dee")
    tab1 = httpx.Client(timeout=20)
    payment_url = start_checkout(tab1, suite, offer["id"], email)
    tab2 = httpx.Client(timeout=20)
    with ThreadPoolExecutor(4) as pool:
        clicks = list(pool.map(lambda c: c.post(f"{payment_url}/pay", data=CARD), [tab1, tab1, tab2, tab2]))
    assert {c.status_code for c in clicks} == {303}
    assert len(purchases(suite, email)) == 1
    # Reload and back button: the paid attempt moves on to the funnel, never to a new charge.
    assert tab1.get(payment_url).headers["location"].endswith("/upsell")
    assert tab2.post(f"{payment_url}/pay", data=CARD).headers["location"].endswith("/upsell")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: c.post(f"{payment_url}/upsell", data={"position": "0:up", "decision": "accept"}),
                      [tab1, tab2]))
    bought = purchases(suite, email)
    assert sorted(p["offer_id"] for p in bought) == sorted([offer["id"], up["id"]])


@SANDBOX
def test_a_declined_upsell_charge_says_so_and_the_buyer_can_decline(suite):
    up = create_offer(suite, name="Extra", product_ids=products(suite, "Extra"), price={"amount": 900, "currency": "EUR"})
    offer = create_offer(suite, name="Course", product_ids=products(suite, "Course"), upsells=[{"offer_id": up["id"]}])
    email, browser = new_email("ted"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    # 3-D Secure on the payment page, then one click upsells need none.
    challenged = browser.post(f"{payment_url}/pay", data={"card_number": "4000002500003155"})
    assert challenged.status_code == 303 and "/sandbox/authenticate/" in challenged.headers["location"]
    assert purchases(suite, email) == []
    challenge = browser.get(challenged.headers["location"])
    assert "Confirm payment" in challenge.text
    approved = browser.post(challenged.headers["location"], data={"outcome": "approve"})
    back = browser.get(suite.url("checkout") + approved.headers["location"])
    assert back.headers["location"].endswith("/upsell")
    assert len(purchases(suite, email)) == 1


@SANDBOX
def test_a_logged_in_customer_who_owns_everything_is_told_before_paying(suite, store):
    email, browser = new_email("own"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, store.offer_id, email)
    set_up_account(browser, suite, browser.post(f"{payment_url}/pay", data=CARD).headers["location"])
    again = start_checkout(browser, suite, store.offer_id, email)
    page = browser.get(again)
    assert "You already own everything in this offer." in page.text
    refused = browser.post(f"{again}/pay", data=CARD)
    assert refused.status_code == 409
    assert len(purchases(suite, email)) == 1


@SANDBOX
def test_offers_refuse_impossible_prices_and_funnels_with_a_clear_message(suite, store):
    with suite.admin("checkout") as checkout:
        def refused(body: dict) -> str:
            answer = checkout.post("/admin/offers", json={"name": "X", "product_ids": [store.product_id], **body})
            assert answer.status_code == 422, answer.text
            return answer.json().get("detail") if isinstance(answer.json().get("detail"), str) else answer.json()["message"]

        assert "less than or equal to" in refused({"price": {"amount": 2**63, "currency": "EUR"}})
        assert refused({"price": {"amount": 100_000_001, "currency": "EUR"}}) == \
            "The price may be at most 1,000,000.00 EUR."
        assert "not an ISO 4217 currency" in refused({"price": {"amount": 100, "currency": "ABC"}})
        assert refused({"price": {"amount": 100, "currency": "EUR"}, "upsells": [{"offer_id": "offer_nope"}]}) == \
            "unknown offer id(s): offer_nope"
        assert refused({"price": {"amount": 100, "currency": "EUR"},
                        "post_purchase": {"skip_account_page": True}}) == \
            "The account creation page can only be skipped when the buyer goes on to a landing page."


# --- what follows the payment ---------------------------------------------------------------

LANDING = "https://seller.example/welcome"


def setup_link_in(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return next(word for word in text.split() if "/setup?" in word and "token=" in word)


@BOTH_PROVIDERS
def test_skipping_the_account_page_lands_on_the_sellers_page_and_emails_the_setup_link(suite, smtp_inbox,
                                                                                      stripe_test_mode):
    offer = create_offer(suite, name="Webinar", product_ids=products(suite, "Webinar"), post_purchase={
        "skip_account_page": True, "destination": "landing_page", "landing_page_url": LANDING})
    email, browser = new_email("sky"), httpx.Client(timeout=10)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], email), stripe=stripe_test_mode)
    assert paid.headers["location"] == LANDING
    welcome = smtp_inbox.wait_for(lambda m: m["To"] == email and m["Subject"] == "Set up your account")
    created = set_up_account(browser, suite, setup_link_in(welcome))
    assert created.status_code == 303


@BOTH_PROVIDERS
def test_the_thank_you_page_follows_the_account_page(suite, stripe_test_mode):
    bump = create_offer(suite, name="Checklist", product_ids=products(suite, "Checklist"),
                        price={"amount": 500, "currency": "EUR"})
    offer = create_offer(suite, name="Guide", product_ids=products(suite, "Guide"), order_bump_offer_id=bump["id"],
                         post_purchase={"destination": "thank_you"})
    email, browser = new_email("tia"), httpx.Client(timeout=10)
    paid = pay(browser, suite, start_checkout(browser, suite, offer["id"], email), stripe=stripe_test_mode,
               order_bump="on")
    created = set_up_account(browser, suite, paid.headers["location"])
    purchase = next(p for p in purchases(suite, email) if p["offer_id"] == offer["id"])
    assert created.headers["location"] == f"{suite.url('checkout')}/purchases/{purchase['id']}/thank-you"
    thanks = browser.get(created.headers["location"])
    # What the buyer came for first, then the bump paid with it.
    assert "Thank you for your purchase" in thanks.text and 0 < thanks.text.index("Guide") < thanks.text.index("Checklist")


@SANDBOX
def test_a_cart_pays_its_offers_at_once_and_its_settings_override_the_offers(suite):
    first = create_offer(suite, name="Course A", product_ids=products(suite, "Course A"),
                         price={"amount": 3000, "currency": "EUR"})
    second = create_offer(suite, name="Course B", product_ids=products(suite, "Course B"),
                          price={"amount": 2000, "currency": "EUR"}, post_purchase={"destination": "thank_you"})
    with suite.admin("checkout") as checkout:
        cart = checkout.post("/admin/carts", json={"name": "Bundle", "offer_ids": [first["id"], second["id"]],
                                                   "post_purchase": {"skip_account_page": True,
                                                                     "destination": "landing_page",
                                                                     "landing_page_url": LANDING}})
        assert cart.status_code == 201, cart.text
        mixed = checkout.post("/admin/carts", json={"name": "Bad", "offer_ids": [first["id"], first["id"]]})
        assert mixed.status_code == 422
    email, browser = new_email("cat"), httpx.Client(timeout=10)
    started = browser.post(cart.json()["checkout_url"] + "/checkout", data={"email": email})
    payment_url = suite.url("checkout") + started.headers["location"]
    assert "Pay <span id=\"total\">50.00 EUR</span>" in browser.get(payment_url).text
    paid = browser.post(f"{payment_url}/pay", data=CARD)
    assert paid.headers["location"] == LANDING
    bought = purchases(suite, email)
    assert sorted(p["price"]["amount"] for p in bought) == [2000, 3000]
    details = [purchase_detail(suite, p["id"]) for p in bought]
    assert len({d["payments"][0]["id"] for d in details}) == 1
    assert details[0]["payments"][0]["amount"]["amount"] == 5000


@SANDBOX
def test_a_password_chosen_at_checkout_goes_to_accounts_and_no_account_page_follows(suite):
    offer = create_offer(suite, name="Course", product_ids=products(suite, "Course"),
                         post_purchase={"require_password": True})
    email, browser = new_email("pam"), httpx.Client(timeout=10)
    payment_url = start_checkout(browser, suite, offer["id"], email)
    assert 'name="password_repeat"' in browser.get(payment_url).text
    fields = {"first_name": "Pam", "last_name": "Ode", "password": "a good passphrase"}
    mismatch = browser.post(f"{payment_url}/pay", data={**CARD, **fields, "password_repeat": "another one"})
    assert mismatch.status_code == 422 and "The two passwords are not the same." in mismatch.text
    assert purchases(suite, email) == []
    handed = browser.post(f"{payment_url}/pay", data={**CARD, **fields, "password_repeat": "a good passphrase"})
    assert handed.status_code == 200 and handed.headers["cache-control"] == "no-store"
    assert f'action="{suite.url("accounts")}/setup/checkout"' in handed.text
    hidden = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', handed.text))
    assert hidden["password"] == "a good passphrase" and hidden["next"].endswith("/next")
    # The page posts itself from checkout's origin, as a browser says in `Origin`.
    handed_over = browser.post(f"{suite.url('accounts')}/setup/checkout", data=hidden,
                               headers={"Origin": suite.url("checkout")})
    signed_in = follow_page(browser, handed_over)
    assert str(signed_in.url).startswith(f"{suite.url('entitlements')}/library?purchase=")
    eventually(lambda: "Course" in browser.get(f"{suite.url('entitlements')}/library").text)
    log_out(browser, suite)
    logged_in = log_in(browser, suite, email, "a good passphrase")
    assert logged_in.status_code == 303

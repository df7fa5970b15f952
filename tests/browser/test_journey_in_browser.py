"""The new customer's journey in a real browser: what a customer sees, clicks and types."""

from __future__ import annotations

import re
import uuid
from typing import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from postsale_local.browser import CHROMIUM_ARGS, ensure_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


# Module scope: Playwright's sync API keeps an event loop running in this thread while it
# lives, and the asynchronous tests of other modules need the thread's loop free.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.parametrize("suite", ["sqlite"], indirect=True)
def test_a_new_customer_buys_creates_the_account_and_comes_back_by_the_email(suite, store, smtp_inbox, browser):
    email = f"eve-{uuid.uuid4().hex[:8]}@example.com"
    library_url = f"{suite.url('entitlements')}/library"
    page = browser.new_context().new_page()

    page.goto(store.checkout_url)
    expect(page.get_by_role("heading")).to_have_text(f"{store.product_name} offer")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Continue to payment").click()

    expect(page.get_by_text(f"Buying as {email}")).to_be_visible()
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_role("button", name="Pay 49.00 EUR").click()
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")

    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay 49.00 EUR").click()
    # The account page waits (refreshing itself) until the purchase has reached accounts.
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"You will log in with {email}")).to_be_visible()
    page.get_by_label("First name").fill("Eve")
    page.get_by_label("Last name").fill("Moss")
    page.get_by_label("Password", exact=True).fill("eve-password-1")
    page.get_by_label("Repeat password").fill("eve-password-1")
    page.get_by_role("button", name="Create account").click()

    page.wait_for_url(re.compile(re.escape(library_url) + r"\?purchase="))
    expect(page.locator("ul.products")).to_contain_text(store.product_name)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(re.escape(suite.url("accounts")) + r"/login"))
    page.goto(library_url)
    expect(page).to_have_url(re.compile(re.escape(suite.url("accounts")) + r"/login\?next="))

    # The confirmation email's button leads to the library, through the login page.
    confirmation = smtp_inbox.wait_for(lambda m: m["To"] == email and m["Subject"].startswith("Your purchase"))
    html = confirmation.get_body(preferencelist=("html",)).get_content()
    button = re.search(r'href="([^"]+)"[^>]*>Log in to your library<', html).group(1)
    page.goto(button)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("eve-password-1")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(library_url)
    expect(page.locator("ul.products")).to_contain_text(store.product_name)


@pytest.mark.parametrize("suite", ["sqlite"], indirect=True)
def test_a_buyer_takes_the_coupon_the_bump_and_the_funnel_then_sees_four_products(suite, smtp_inbox, browser):
    """Coupon and order bump on the payment page; accept an upsell, decline the next, accept its
    downsell; create the account; all four products in the library; the emails in the mailbox."""
    run = uuid.uuid4().hex[:6]

    def offer(name: str, amount: int, **settings) -> dict:
        product = suite.create_product(f"{name} {run}")
        return suite.create_offer({"name": f"{name} {run}", "product_ids": [product],
                                   "price": {"amount": amount, "currency": "EUR"}, **settings})

    workbook, coaching = offer("Workbook", 1500), offer("Coaching", 9900)
    masterclass, replay = offer("Masterclass", 19900), offer("Replay", 4900)
    course = offer("Course", 4900, order_bump_offer_id=workbook["id"],
                   upsells=[{"offer_id": coaching["id"]},
                            {"offer_id": masterclass["id"], "downsell_offer_id": replay["id"]}])
    with suite.admin("checkout") as checkout:
        checkout.post("/admin/coupons", json={"code": f"SAVE{run}", "percent_off": 20}).raise_for_status()
    email = f"zoe-{run}@example.com"
    page = browser.new_context().new_page()

    page.goto(course["checkout_url"])
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Continue to payment").click()
    page.get_by_label("Coupon code").fill("nope")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("alert")).to_have_text("The code NOPE does not exist.")
    page.get_by_label("Coupon code").fill(f"save{run}")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_have_text(f"The code SAVE{run.upper()} is applied.")
    expect(page.get_by_role("button", name="Pay 39.20 EUR")).to_be_visible()
    page.get_by_label(re.compile("Yes, add")).check()
    # The total follows the checkbox before paying: 20 % off both, 39.20 + 12.00.
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay 51.20 EUR").click()

    expect(page.get_by_role("heading", name=f"Coaching {run}")).to_be_visible()
    page.get_by_role("button", name=re.compile("Yes, add it")).click()
    expect(page.get_by_role("heading", name=f"Masterclass {run}")).to_be_visible()
    page.get_by_role("button", name="No, thanks").click()
    expect(page.get_by_role("heading", name=f"Replay {run}")).to_be_visible()
    page.get_by_role("button", name=re.compile("Yes, add it")).click()

    expect(page.get_by_role("heading", name="Create your account")).to_be_visible(timeout=30_000)
    page.get_by_label("First name").fill("Zoe")
    page.get_by_label("Last name").fill("Park")
    page.get_by_label("Password", exact=True).fill("zoe-password-1")
    page.get_by_label("Repeat password").fill("zoe-password-1")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(re.escape(f"{suite.url('entitlements')}/library") + r"\?purchase="))
    for name in ("Course", "Workbook", "Coaching", "Replay"):
        expect(page.locator("ul.products")).to_contain_text(f"{name} {run}")
    expect(page.locator("ul.products")).not_to_contain_text(f"Masterclass {run}")

    for name in ("Course", "Workbook", "Coaching", "Replay"):
        smtp_inbox.wait_for(lambda m, name=name: m["To"] == email and f"{name} {run}" in m["Subject"])

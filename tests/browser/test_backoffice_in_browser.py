"""The seller's back office in a real browser, across the four running services: log in; create a
product and a subscription offer with an upsell; a customer buys it in a second browser; find the
purchase, read its timeline, refund part of it, cancel at the period's end and undo it; revoke and
grant the product again; resend the setup link; change the theme and see it on the customer's login
page; a support user is refused a refund. axe-core checks every back-office page on the way
(screenshots and reports in the test artefacts, `POSTSALE_TEST_ARTIFACTS`)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from postsale_local.browser import CHROMIUM_ARGS, ensure_chromium
from tests.browser.test_theme_in_browser import computed, no_serious_violations
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = Path(os.environ.get("POSTSALE_TEST_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")) / "backoffice"
SUPPORT = {"email": "support-in-browser@store.test", "password": "support password 1"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def checked(page: Page, name: str) -> None:
    """A back-office page as a seller sees it: in the layout, and without a serious accessibility
    violation."""
    expect(page.locator("nav.backoffice")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    no_serious_violations(page, f"backoffice-{name}")


def log_in(page: Page, start_url: str, login: dict) -> None:
    page.goto(start_url)  # a stranger is sent to the staff login, and back after it
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(start_url)


def reload_until(page: Page, selector: str, text: str, timeout: float = 60) -> None:
    """Another service's event reaches this page's service a moment later: reload until it shows."""
    def shown() -> bool:
        page.reload()
        return text in (page.locator(selector).text_content() or "")

    eventually(shown, timeout=timeout, interval=1)


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_a_seller_runs_the_store_from_the_back_office(suite, smtp_inbox, browser):
    run = uuid.uuid4().hex[:6]
    checkout, entitlements, accounts, notifications = (suite.url(s) for s in (
        "checkout", "entitlements", "accounts", "notifications"))
    # An owner of its own: `make run`'s login (`seed_staff_login`) belongs to the test of that command.
    owner_login = {"email": f"owner-{run}@store.test", "password": f"owner password {run}"}
    with suite.admin("accounts") as admin:
        for login, name, role in ((owner_login, "Olga", "owner"), (SUPPORT, "Sam", "support")):
            added = admin.post("/admin/staff", json={**login, "name": name, "role": role})
            assert added.status_code in (201, 409), added.text
    seller = browser.new_context().new_page()
    log_in(seller, f"{checkout}/admin/dashboard", owner_login)
    checked(seller, "dashboard")

    # Two products: the course the offer sells, and the coaching its upsell sells.
    product_ids = {}
    for name, delivery in ((f"Course {run}", "Hosted membership"), (f"Coaching {run}", "A service")):
        seller.goto(f"{entitlements}/admin/products/new")
        seller.get_by_label("Name", exact=True).fill(name)
        seller.get_by_label(delivery, exact=True).check()
        seller.get_by_role("button", name="Create the product").click()
        expect(seller.get_by_text("The product is created")).to_be_visible()
        product_ids[name] = seller.locator("[data-product-id]").first.get_attribute("data-product-id")
    checked(seller, "product")
    seller.goto(f"{entitlements}/admin/products")
    checked(seller, "products")

    # The offers: checkout learns of the products from entitlements' topic.
    seller.goto(f"{checkout}/admin/offers/new")
    reload_until(seller, "[data-offer-form]", f"Coaching {run}")
    checked(seller, "offer-new")
    seller.get_by_label("Name", exact=True).fill(f"Coaching {run}")
    seller.get_by_label("Price", exact=True).fill("99")
    seller.locator(f"input[name=product_ids][value='{product_ids[f'Coaching {run}']}']").check()
    seller.get_by_role("button", name="Create the offer").click()
    expect(seller.locator("[data-done]")).to_contain_text("The offer was created")
    upsell_id = re.search(r"/admin/offers/(offer_\w+)/edit", seller.url).group(1)

    seller.goto(f"{checkout}/admin/offers/new")
    seller.get_by_label("Name", exact=True).fill(f"Membership {run}")
    seller.get_by_label("Price model").select_option("subscription")
    seller.get_by_label("Price", exact=True).fill("19")
    seller.locator(f"input[name=product_ids][value='{product_ids[f'Course {run}']}']").check()
    seller.get_by_label("Upsell 1", exact=True).select_option(upsell_id)
    seller.get_by_role("button", name="Create the offer").click()
    checkout_link = seller.locator("input#checkout-link").input_value()
    assert checkout_link.startswith(f"{checkout}/offers/offer_")
    checked(seller, "offer")
    seller.goto(f"{checkout}/admin/offers")
    checked(seller, "offers")

    # A customer buys it, and the upsell, in a browser of their own; the account is not set up yet.
    email = f"buyer-{run}@example.com"
    buyer = browser.new_context().new_page()
    buyer.goto(checkout_link)
    buyer.get_by_label("Email address").fill(email)
    buyer.get_by_role("button", name="Continue to payment").click()
    buyer.get_by_label("Card number").fill("4242 4242 4242 4242")
    buyer.get_by_role("button", name=re.compile(r"19\.00 EUR")).click()
    expect(buyer.get_by_role("heading", name=f"Coaching {run}")).to_be_visible(timeout=30_000)
    buyer.get_by_role("button", name=re.compile("Yes, add it")).click()
    expect(buyer.get_by_role("heading", name="Create your account")).to_be_visible(timeout=30_000)

    # The seller finds the purchase and reads its timeline, with what the other services did.
    seller.goto(f"{checkout}/admin/sales")
    seller.get_by_label("Buyer's email").fill(email)
    seller.get_by_role("button", name="Search").click()
    expect(seller.locator("tr[data-purchase-id]")).to_have_count(2)
    checked(seller, "sales")
    seller.get_by_role("link", name=f"Membership {run}").click()
    sale_url = seller.url
    reload_until(seller, "ol[data-timeline]", f"Access to Course {run} granted")
    reload_until(seller, "ol[data-timeline]", "purchase confirmation")
    checked(seller, "sale")

    seller.locator("#refund-amount").fill("5")
    seller.get_by_role("button", name="Review the refund").click()
    checked(seller, "refund-confirmation")
    seller.get_by_role("button", name="Yes, refund 5.00 EUR").click()
    expect(seller.locator("[data-done]")).to_contain_text("Refunded 5.00 EUR")
    # Newest first; an email another service sent meanwhile may come before it.
    expect(seller.locator("ol[data-timeline] > li:not([data-scheduled])").filter(
        has_text="Refunded 5.00 EUR")).to_have_count(1)

    seller.locator("[data-action=cancel-period-end]").click()
    expect(seller.get_by_text("The subscription will end on")).to_be_visible()
    expect(seller.locator("ol[data-timeline]")).to_contain_text("Cancellation scheduled")
    seller.locator("[data-action=undo-cancel]").click()
    expect(seller.get_by_text("The cancellation is undone")).to_be_visible()
    expect(seller.locator("ol[data-timeline]")).to_contain_text("Cancellation undone")
    expect(seller.locator("[data-action=cancel-period-end]")).to_be_visible()  # it can be cancelled again

    # Access: revoke the course by hand, then grant it again; billing is not touched.
    access_url = seller.locator("a[href*='/admin/access/']").first.get_attribute("href")
    customer_id = access_url.rsplit("/", 1)[1]
    course = product_ids[f"Course {run}"]
    seller.goto(access_url)
    checked(seller, "access")
    expect(seller.locator(f"tr[data-product-access='{course}']")).to_have_attribute("data-available", "true")
    seller.locator(f"tr[data-product-access='{course}']").get_by_role("link", name=re.compile("Revoke")).click()
    checked(seller, "revoke-confirmation")
    seller.get_by_role("button", name=f"Yes, remove access to Course {run} now").click()
    expect(seller.locator(f"tr[data-product-access='{course}']")).to_have_attribute("data-available", "false")
    seller.get_by_label("Product", exact=True).select_option(course)
    seller.get_by_role("button", name="Grant the product").click()
    expect(seller.get_by_text(f"Course {run} is granted")).to_be_visible()
    expect(seller.locator(f"tr[data-product-access='{course}']")).to_have_attribute("data-available", "true")

    # The customer has not set the account up: the seller sends the setup link again.
    seller.goto(f"{accounts}/admin/customers/{customer_id}/profile")
    checked(seller, "customer")
    seller.get_by_role("button", name="Resend the setup link").click()
    expect(seller.get_by_role("status")).to_contain_text(f"is on its way to {email}")
    smtp_inbox.wait_for(lambda m: m["To"] == email
                        and (m["X-Postsale-Email-Key"] or "").startswith("account-setup:"), timeout=60)
    seller.goto(f"{accounts}/admin/customers")
    checked(seller, "customers")

    # The other back-office pages, each checked once.
    for name, url in (("emails", f"{notifications}/admin/mail"),
                      ("email-templates", f"{notifications}/admin/mail/templates"),
                      ("email-template", f"{notifications}/admin/mail/templates/purchase_confirmation"),
                      ("email-settings", f"{notifications}/admin/mail/settings"),
                      ("webhook-new", f"{notifications}/admin/webhooks/new"),
                      ("product-content", f"{entitlements}/admin/products/{course}/edit/content"),
                      ("cancel-now-confirmation", f"{sale_url}/cancel-now"),
                      ("dashboard-after-sales", f"{checkout}/admin/dashboard"),
                      ("emails-sent", f"{notifications}/admin/mail/sent?to={email}"),
                      ("sequences", f"{notifications}/admin/mail/sequences"),
                      ("rules", f"{notifications}/admin/mail/rules"),
                      ("webhooks", f"{notifications}/admin/webhooks"),
                      ("operations", f"{checkout}/admin/operations/checkout"),
                      ("reconciliation", f"{entitlements}/admin/operations/entitlements/reconciliation"),
                      ("staff", f"{accounts}/admin/staff"),
                      ("import", f"{accounts}/admin/customers/import")):
        seller.goto(url)
        checked(seller, name)

    # A support user sees the purchase but is refused the refund.
    support = browser.new_context().new_page()
    log_in(support, sale_url, SUPPORT)
    expect(support.locator("[data-refund-form]")).to_have_count(0)
    refused = support.goto(f"{sale_url}/refund?amount=1")
    assert refused.status == 403
    expect(support.get_by_text("Only the store's owner may do this")).to_be_visible()

    # The theme: a dark background and a yellow button, on the customer's login page.
    try:
        seller.goto(f"{accounts}/admin/store-theme")
        checked(seller, "theme")
        seller.locator("#background_color").fill("#101820")
        seller.locator("#button_background_color").fill("#ffd166")
        seller.locator("#button_text_color").fill("#101820")
        seller.locator("button[data-save-theme]").click()
        expect(seller.locator("[data-theme-saved]")).to_be_visible()
        buyer.goto(f"{accounts}/login")
        assert computed(buyer, "body", "background-color") == "rgb(16, 24, 32)"
        assert computed(buyer, "button[type=submit]", "background-color") == "rgb(255, 209, 102)"
    finally:
        with suite.admin("accounts") as admin:
            admin.put("/admin/theme", json={})

"""The back office's sales pages as a seller uses them, over HTTP on a migrated SQLite database and
the sandbox provider: purchases made through checkout's own buyer pages, then found in the list,
read on their information page (the order, the payments, the timeline), refunded in part (a
confirmation posted twice refunds once: test_checkout_backoffice_refunds), and their subscription cancelled at the period's end and
undone, paused (confirmed first when that suspends access), resumed and run forward on the sandbox's
test clock. Support is refused refunds."""

from __future__ import annotations

import html
import logging
import re
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from postsale.checkout import happenings, sales
from postsale.checkout.adapters.tables import CatalogProduct, Purchase, Refund, Subscription
from postsale.checkout.config import MIGRATIONS_DIR
from postsale.checkout.entrypoints.app import create_app
from postsale.contracts import AccessGranted
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.migrations import migrate
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import FormBrowser, StaffTokens

pytestmark = pytest.mark.unit
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
CARD = "4242424242424242"


class Browser(FormBrowser):
    """A staff member's browser: asks for pages, and each form it posts carries the page's CSRF token."""

    csrf_page = "/admin/sales"


class Store:
    """Checkout as `create_app` builds it on the sandbox, without Kafka: offers through the JSON admin
    API, purchases through the buyer's pages, and staff browsers for the back office."""

    def __init__(self, tmp_path, monkeypatch) -> None:
        for name, value in {"CHECKOUT_DATABASE_URL": f"sqlite:///{tmp_path / 'checkout.db'}",
                            "CHECKOUT_ADMIN_TOKEN": "admin-token-for-tests",
                            "CHECKOUT_SECRET_KEY": "secret-key-for-the-tests",
                            "CHECKOUT_PAYMENT_PROVIDER": "sandbox", "POSTSALE_COOKIE_SECURE": "false",
                            "POSTSALE_ACCOUNTS_URL": "http://accounts.test",
                            "POSTSALE_ENTITLEMENTS_URL": "http://entitlements.test"}.items():
            monkeypatch.setenv(name, value)
        handlers = logging.getLogger().handlers[:]
        self.app = create_app()  # it sets up JSON logs on the root logger: put pytest's back afterwards
        logging.getLogger().handlers[:] = handlers
        migrate(self.app.state.engine, MIGRATIONS_DIR)
        with Session(self.app.state.engine) as session:
            for pid, name in (("prod_course", "Course"), ("prod_book", "Workbook"), ("prod_club", "Club")):
                session.add(CatalogProduct(id=pid, name=name, delivery_type="membership"))
            session.commit()
        self.staff = StaffTokens()
        self.staff.install(self.app)
        self.api = TestClient(self.app, follow_redirects=False, headers=ADMIN)

    def offer(self, name: str, amount: int, products: list[str], **fields) -> str:
        made = self.api.post("/admin/offers", json={"name": name, "product_ids": products,
                                                    "price": {"amount": amount, "currency": "EUR"}, **fields})
        assert made.status_code == 201, made.text
        return made.json()["id"]

    def buy(self, offer_id: str, email: str, **choices) -> str:
        """Buys through the buyer's pages with the sandbox's success card; the attempt's id."""
        buyer = TestClient(self.app, follow_redirects=False)
        started = buyer.post(f"/offers/{offer_id}/checkout", data={"email": email})
        assert started.status_code == 303, started.text
        paid = buyer.post(f"{started.headers['location']}/pay", data={"card_number": CARD, **choices})
        assert paid.status_code == 303, paid.text
        self.buyer = buyer
        return started.headers["location"].removeprefix("/checkout/")

    def purchase(self, email: str, offer_id: str) -> Purchase:
        with Session(self.app.state.engine) as session:
            return session.exec(select(Purchase).where(Purchase.email == email, Purchase.offer_id == offer_id)).one()

    def browser(self, role: str = "owner") -> Browser:
        browser = Browser(self.app, follow_redirects=False, headers={"Accept": "text/html"})
        browser.cookies.set(STAFF_COOKIE, self.staff.token(role))
        return browser


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return Store(tmp_path, monkeypatch)


def text(page) -> str:
    """The page's words as a person reads them: no markup, spaces collapsed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page.text)))


def timeline(page) -> list[tuple[str, str, bool]]:
    """The timeline's entries as shown: (moment, title, scheduled), top first."""
    items = re.findall(r'<li data-kind="[^"]+" data-at="([^"]+)"( data-scheduled)?>.*?<strong>(.*?)</strong>',
                       page.text, re.S)
    return [(at, html.unescape(title), bool(scheduled)) for at, scheduled, title in items]


def happened(page) -> list[tuple[str, str]]:
    return [(at, title) for at, title, scheduled in timeline(page) if not scheduled]


def confirmed_refund(owner: Browser, purchase: Purchase, amount: str, reason: str = "") -> dict:
    """The refund confirmation's form, as the page renders it for `amount`: what its button posts."""
    page = owner.get(f"/admin/sales/{purchase.id}/refund", params={"amount": amount, "reason": reason})
    assert page.status_code == 200, page.text
    form = page.text.split('action="/admin/sales/')[1].split("</form>")[0]
    return {name: html.unescape(value) for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', form)}


def refund_count(store: Store) -> int:
    with Session(store.app.state.engine) as session:
        return session.exec(select(func.count()).select_from(Refund)).one()


def monthly(store: Store) -> str:
    return store.offer("Club", 1900, ["prod_club"], billing={"type": "subscription", "interval": "month"})


# --- the list ---------------------------------------------------------------------------------


def test_a_stranger_is_sent_to_the_staff_login(store):
    stranger = TestClient(store.app, follow_redirects=False, headers={"Accept": "text/html"})
    sent = stranger.get("/admin/sales")
    assert sent.status_code == 303 and sent.headers["location"].startswith("http://accounts.test/admin/login?next=")
    assert stranger.get("/admin/sales/pur_1").status_code == 303


def test_the_list_is_newest_first_searchable_by_email_or_customer_and_paginated(store, monkeypatch):
    monkeypatch.setattr(sales, "PAGE_SIZE", 2)
    course = store.offer("Course", 4900, ["prod_course"])
    for email in ("ann@example.com", "bob@example.com", "cara@example.com"):
        store.buy(course, email)
    support = store.browser("support")
    first = support.get("/admin/sales")
    assert first.status_code == 200 and 'aria-current="page">Sales<' in first.text
    ids = re.findall(r'<tr data-purchase-id="([^"]+)"', first.text)
    cara, bob = store.purchase("cara@example.com", course), store.purchase("bob@example.com", course)
    assert ids == [cara.id, bob.id]  # newest first, two a page here
    assert f'href="/admin/sales/{cara.id}">Course</a>' in first.text and "49.00 EUR" in first.text
    assert 'data-status="paid"' in first.text
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = support.get(first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&"))
    assert "ann@example.com" in second.text and "cara@example.com" not in second.text and 'rel="prev"' in second.text
    for page in ("x", "0", "²", "99999999"):  # not a page number: the first page (or an empty one), never an error
        assert support.get("/admin/sales", params={"page": page}).status_code == 200

    found = support.get("/admin/sales", params={"q": "BOB@"})
    assert re.findall(r'<tr data-purchase-id="([^"]+)"', found.text) == [bob.id]
    assert "No purchase's buyer email contains “zed”" in text(support.get("/admin/sales", params={"q": "zed"}))
    assert "data-purchase-id" not in support.get("/admin/sales", params={"q": "%"}).text  # a wildcard is a character
    mine = support.get("/admin/sales", params={"customer": cara.customer_id})
    assert re.findall(r'<tr data-purchase-id="([^"]+)"', mine.text) == [cara.id]
    assert f"http://accounts.test/admin/customers/{cara.customer_id}/profile" in mine.text
    refused = support.get("/admin/sales", params={"customer": "cus_<script>"})
    assert refused.status_code == 422 and "That is not a customer id" in refused.text and "<script>" not in refused.text


# --- the purchase's page ----------------------------------------------------------------------


def test_the_page_shows_the_order_and_a_timeline_newest_first(store):
    book = store.offer("Workbook", 900, ["prod_book"])
    coaching = store.offer("Coaching", 9900, ["prod_club"])
    mini = store.offer("Mini call", 2900, ["prod_club"])
    course = store.offer("Course", 4900, ["prod_course"], order_bump_offer_id=book,
                         upsells=[{"offer_id": coaching, "downsell_offer_id": mini}])
    checkout = store.buy(course, "ann@example.com", order_bump="on")
    buyer = store.buyer
    for decision in ("decline", "accept"):  # no to the upsell, yes to its downsell
        upsell = buyer.get(f"/checkout/{checkout}/upsell")
        position = re.search(r'name="position" value="([^"]+)"', upsell.text).group(1)
        assert buyer.post(f"/checkout/{checkout}/upsell", data={"position": position, "decision": decision}
                          ).status_code == 303
    primary = store.purchase("ann@example.com", course)

    page = store.browser("support").get(f"/admin/sales/{primary.id}")
    assert page.status_code == 200, page.text
    shown = text(page)
    assert f'data-purchase-id="{primary.id}"' in page.text and "Course bought by ann@example.com" in shown
    assert "Workbook" in shown and "order bump" in shown and "Mini call" in shown and "upsell" in shown
    assert "First payment: Course, Workbook" in shown and "58.00 EUR" in shown and "Upsell: Mini call" in shown
    assert f'href="http://entitlements.test/admin/access/{primary.customer_id}"' in page.text
    assert f'href="http://accounts.test/admin/customers/{primary.customer_id}/profile"' in page.text

    entries = happened(page)
    titles = [title for _, title in entries]
    assert titles == ["Bought Mini call (upsell)", "Paid 29.00 EUR", "Upsell declined: Coaching",
                      "Bought Workbook (order bump)", "Bought Course", "Paid 58.00 EUR", "Checkout started"]
    moments = [at for at, _ in entries]
    assert moments == sorted(moments, reverse=True)

    missing = store.browser().get("/admin/sales/pur_nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


def test_a_partial_refund_is_confirmed_then_done_and_on_the_timeline(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    owner = store.browser("owner")
    page = owner.get(f"/admin/sales/{purchase.id}")
    assert 'name="amount"' in page.text and "Review the refund" in page.text

    submission = confirmed_refund(owner, purchase, "12")["submission"]
    for typed, message in (("twelve", "Enter the amount to refund, like 49.00"),
                           ("50.00", "At most 49.00 EUR is left to refund"), ("0", "Enter the amount to refund"),
                           ("²", "Enter the amount to refund, like 49.00"),  # a digit to str.isdigit, not to int()
                           ("1,000", "“1,000” has 3 decimals and EUR has 2"),
                           ("1.000,50", "write the amount with one decimal mark at most and no separator")):
        refused = owner.get(f"/admin/sales/{purchase.id}/refund", params={"amount": typed})
        assert refused.status_code == 422 and message in text(refused) and f'value="{typed}"' in refused.text
        posted = owner.post(f"/admin/sales/{purchase.id}/refund", data={"amount": typed, "submission": submission})
        assert posted.status_code == 422 and message in text(posted)
    assert "Yes, refund 10.50 EUR" in owner.get(f"/admin/sales/{purchase.id}/refund", params={"amount": "10,50"}).text

    full = owner.get(f"/admin/sales/{purchase.id}/refund", params={"amount": ""})
    assert "Yes, refund 49.00 EUR" in full.text and "A full refund removes the customer's access" in text(full)
    confirm = owner.get(f"/admin/sales/{purchase.id}/refund", params={"amount": "12", "reason": "late delivery"})
    assert confirm.status_code == 200 and "Yes, refund 12.00 EUR" in confirm.text
    assert "A partial refund keeps the customer's access" in text(confirm)
    assert owner.post(f"/admin/sales/{purchase.id}/refund", data={"amount": "12.00"}, csrf=False).status_code == 403
    with Session(store.app.state.engine) as session:
        assert session.exec(select(Refund)).all() == []  # the confirmation and the refusals changed nothing

    with Session(store.app.state.engine) as session:  # entitlements told checkout it granted access
        happenings.access_changed(session, AccessGranted(
            entry_id="grant_1", customer_id=purchase.customer_id, email=purchase.email, product_id="prod_course",
            product_name="Course", delivery_type="membership", reason="purchase", actor="system",
            purchase_id=purchase.id, granted_at=as_utc(purchase.completed_at)), "evt-granted-1")
        session.commit()

    form = confirmed_refund(owner, purchase, "12", "late delivery")
    assert form["amount"] == "12.00" and form["reason"] == "late delivery" and len(form["submission"]) >= 16
    done = owner.post(f"/admin/sales/{purchase.id}/refund", data=form)
    assert done.status_code == 303 and done.headers["location"] == f"/admin/sales/{purchase.id}?done=refunded"
    after = owner.get(done.headers["location"])
    assert "Refunded 12.00 EUR to ann@example.com. 37.00 EUR is left to refund." in text(after)
    assert 'data-refunded>12.00 EUR' in after.text and "late delivery" in after.text
    assert [title for _, title in happened(after)][:2] == ["Refunded 12.00 EUR", "Access granted"]
    assert "Access to Course granted: purchase" in text(after)
    assert 'value="37.00"' in after.text  # what is left, ready to refund
    rows = owner.get("/admin/sales").text
    assert 'data-status="partly refunded"' in rows


def test_support_is_refused_refunds_and_sees_no_refund_button(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    support = store.browser("support")
    page = support.get(f"/admin/sales/{purchase.id}")
    assert page.status_code == 200 and 'data-staff-role="support"' in page.text
    assert "data-refund-form" not in page.text and "Review the refund" not in page.text
    assert "Only the store's owner can refund" in text(page)
    refused = support.get(f"/admin/sales/{purchase.id}/refund", params={"amount": "10"})
    assert refused.status_code == 403 and "Only the store's owner may do this" in text(refused)
    token = confirmed_refund(store.browser("owner"), purchase, "10")["submission"]
    forged = support.post(f"/admin/sales/{purchase.id}/refund", data={"amount": "10.00", "submission": token})
    assert forged.status_code == 403
    with Session(store.app.state.engine) as session:
        assert session.get(Purchase, purchase.id).refunded == 0


# --- the billing ------------------------------------------------------------------------------


def test_cancel_at_period_end_then_undo_and_what_cannot_be_done(store):
    club = monthly(store)
    store.buy(club, "ann@example.com")
    purchase = store.purchase("ann@example.com", club)
    support = store.browser("support")  # support may change billing: it changes no price
    page = support.get(f"/admin/sales/{purchase.id}")
    assert "Cancel at the end of the period" in page.text and "Renewal" in page.text and "19.00 EUR" in page.text
    assert ("Renewal due", True) in [(title, scheduled) for _, title, scheduled in timeline(page)]

    cancelled = support.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "period_end"})
    assert cancelled.status_code == 303 and cancelled.headers["location"].endswith("?done=cancel_scheduled")
    after = support.get(cancelled.headers["location"])
    assert "The subscription will end on" in text(after) and "data-cancel-at" in after.text
    assert happened(after)[0][1] == "Cancellation scheduled"
    assert ("The subscription ends", True) in [(title, scheduled) for _, title, scheduled in timeline(after)]
    assert "Undo the cancellation" in after.text and 'data-no-payments-due' in after.text

    undone = support.post(f"/admin/sales/{purchase.id}/undo-cancel", data={})
    assert undone.status_code == 303
    after = support.get(undone.headers["location"])
    assert "The cancellation is undone" in text(after) and "data-cancel-at" not in after.text
    assert [title for _, title in happened(after)][:2] == ["Cancellation undone", "Cancellation scheduled"]
    again = support.post(f"/admin/sales/{purchase.id}/undo-cancel", data={})
    assert again.status_code == 409 and "has no pending cancellation to undo" in text(again)

    for at, message in (("2030-02-30", "That date does not exist"), ("soon", "Choose the date the billing ends"),
                        ("2001-01-01", "Choose a cancellation date in the future")):
        refused = support.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "date", "at": at})
        assert refused.status_code in (409, 422) and message in text(refused)
    with Session(store.app.state.engine) as session:
        assert session.get(Subscription, purchase.subscription_id).cancel_at is None  # nothing changed

    paused = support.post(f"/admin/sales/{purchase.id}/pause", data={})
    assert "is paused" in text(support.get(paused.headers["location"]))
    resumed = support.post(f"/admin/sales/{purchase.id}/resume", data={})
    assert "is resumed" in text(support.get(resumed.headers["location"]))

    asked = support.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "now"})
    assert asked.status_code == 200 and "Yes, cancel now and remove access" in asked.text
    assert "removes the customer's access to Club now" in text(asked)
    assert support.get(f"/admin/sales/{purchase.id}/cancel-now").status_code == 200
    now = support.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "now", "confirm": "yes",
                                                                   "reason": "asked by phone"})
    ended = support.get(now.headers["location"])
    assert "is cancelled now" in text(ended) and 'data-subscription-status="cancelled"' in ended.text
    assert happened(ended)[0][1] == "Subscription cancelled" and "asked by phone" in ended.text
    late = support.post(f"/admin/sales/{purchase.id}/pause", data={})
    assert late.status_code == 409 and "Only a running subscription can be paused" in text(late)


def test_a_later_cancellation_is_confirmed_when_the_offer_ends_access_as_soon_as_asked(store):
    club = store.offer("Club", 1900, ["prod_club"], billing={"type": "subscription", "interval": "month"},
                       access_policy={"on_cancel": "now"})
    store.buy(club, "ann@example.com")
    purchase = store.purchase("ann@example.com", club)
    owner = store.browser()
    later = (utcnow() + timedelta(days=3650)).replace(day=28)  # the page asks the wall clock: ahead of it
    at, shown = f"{later:%Y-%m-%d}", f"{later:%d %b %Y}"
    asked = owner.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "date", "at": at})
    assert asked.status_code == 200 and 'data-cancel-confirmation="date"' in asked.text
    assert f"the customer loses access to Club now, not on {shown}" in text(asked)
    with Session(store.app.state.engine) as session:
        assert session.get(Subscription, purchase.subscription_id).cancel_at is None
    done = owner.post(f"/admin/sales/{purchase.id}/cancel", data={"when": "date", "at": at, "confirm": "yes"})
    assert f"will end on {shown}" in text(owner.get(done.headers["location"]))


def test_a_pause_that_suspends_access_is_confirmed_first(store):
    club = store.offer("Club", 1900, ["prod_club"], billing={"type": "subscription", "interval": "month"},
                       access_policy={"on_pause": "suspend"})
    store.buy(club, "ann@example.com")
    purchase = store.purchase("ann@example.com", club)
    support = store.browser("support")
    page = support.get(f"/admin/sales/{purchase.id}")
    assert f'href="/admin/sales/{purchase.id}/pause" data-action="pause"' in page.text  # a link to the question
    assert f'action="/admin/sales/{purchase.id}/pause"' not in page.text
    asked = support.get(f"/admin/sales/{purchase.id}/pause")
    assert asked.status_code == 200 and "data-pause-confirmation" in asked.text
    assert "the customer loses access to Club now, until you resume the subscription" in text(asked)
    assert "Yes, pause it and suspend access" in asked.text
    unconfirmed = support.post(f"/admin/sales/{purchase.id}/pause", data={})  # a form posted without the question
    assert unconfirmed.status_code == 200 and "data-pause-confirmation" in unconfirmed.text
    with Session(store.app.state.engine) as session:
        assert session.get(Subscription, purchase.subscription_id).status == "active"  # nothing changed yet
    paused = support.post(f"/admin/sales/{purchase.id}/pause", data={"confirm": "yes"})
    assert paused.status_code == 303
    after = text(support.get(paused.headers["location"]))
    assert "The subscription is paused" in after and "The customer's access is suspended meanwhile." in after
    with Session(store.app.state.engine) as session:
        assert session.get(Subscription, purchase.subscription_id).status == "paused"


def test_a_one_time_purchase_has_no_billing_to_change(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    owner = store.browser()
    assert "data-billing-actions" not in owner.get(f"/admin/sales/{purchase.id}").text
    refused = owner.post(f"/admin/sales/{purchase.id}/pause", data={})
    assert refused.status_code == 409 and "has no subscription or payment plan" in text(refused)


def test_the_test_clock_runs_a_renewal_on_the_sandbox_and_is_hidden_elsewhere(store):
    club = monthly(store)
    store.buy(club, "ann@example.com")
    purchase = store.purchase("ann@example.com", club)
    owner = store.browser()
    page = owner.get(f"/admin/sales/{purchase.id}")
    assert "data-test-clock" in page.text and 'name="advance_days"' in page.text
    refused = owner.post(f"/admin/sales/{purchase.id}/clock", data={"advance_days": "0"})
    assert refused.status_code == 422 and "Enter a number of days from 1 to 3660" in text(refused)

    moved = owner.post(f"/admin/sales/{purchase.id}/clock", data={"advance_days": "32"})
    assert moved.status_code == 303, moved.text
    after = owner.get(moved.headers["location"])
    assert "The test customer's time moved 32 days on; 1 renewal" in text(after)
    assert 'data-simulated-days="32"' in after.text
    assert "Renewal of Club" in after.text
    newest = happened(after)[0]
    assert newest[1] == "Paid 19.00 EUR" and datetime.fromisoformat(newest[0].replace("Z", "+00:00")).year >= 2024

    class Elsewhere:  # a store on another provider: no test clock
        name, test_mode = "stripe", False

    store.app.state.payments = Elsewhere()
    page = owner.get(f"/admin/sales/{purchase.id}")
    assert "data-test-clock" not in page.text and "advance_days" not in page.text
    assert owner.post(f"/admin/sales/{purchase.id}/clock", data={"advance_days": "5"}).status_code == 409

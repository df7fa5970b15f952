"""A customer's access page in the back office, over HTTP on the real app (without Kafka): what the
customer may use and why (the ledger's reasons), the ledger newest first, and the seller's grants and
revokes by hand, which never touch billing and which support may make too."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from delivery_support import handle, paid, published
from postsale.contracts import AccessGranted, AccessRevoked
from postsale.entitlements import access_views, grants, handlers
from postsale.entitlements.adapters.tables import AccessEntry, Grant
from postsale.runtime.clock import utcnow
from test_entitlements_backoffice import (ACCOUNTS_LOGIN, Browser, app, engine, form_token, is_missing, made, owner,
                                         support, text_of, tokens)

pytestmark = pytest.mark.unit
FIXTURES = (app, engine, owner, support, tokens)  # the product pages' fixtures, used here by name
CUSTOMER, EMAIL = "cus_ann", "ann@example.com"
ACCESS = f"/admin/access/{CUSTOMER}"


def bought(engine, product_id: str, purchase_id: str = "pur_1") -> None:
    handle(engine, handlers.grant_access_for_purchase, paid(product_id, purchase_id=purchase_id), utcnow())


def access_of(engine, product_id: str, customer_id: str = CUSTOMER):
    with Session(engine) as session:
        return next((p for p in access_views.customer_access(session, customer_id) if p.product_id == product_id),
                    None)


def grant_ids(engine) -> list[str]:
    with Session(engine) as session:
        return [g.id for g in session.exec(select(Grant).order_by(Grant.granted_at)).all()]


def row(page: str, product_id: str) -> str:
    return re.search(rf'<tr data-product-access="{product_id}".*?</tr>', page, re.S).group(0)


def test_a_stranger_is_sent_to_the_staff_login(app, tokens, engine):
    stranger = Browser(app, None, tokens)
    sent = stranger.get(ACCESS)
    assert sent.status_code == 303 and sent.headers["location"].startswith(ACCOUNTS_LOGIN)
    course = made(engine, "Course")
    bought(engine, course)
    [grant_id] = grant_ids(engine)
    assert stranger.get(f"{ACCESS}/grants/{grant_id}/revoke").status_code == 303
    assert stranger.post(f"{ACCESS}/grants/{grant_id}/revoke", csrf=False).status_code in (303, 403)
    assert access_of(engine, course).available


def test_the_page_says_what_the_customer_has_why_and_links_to_their_profile_and_sales(support, engine):
    course, ebook = made(engine, "Course"), made(engine, "Ebook", "download")
    bought(engine, course)
    page = support.get(ACCESS)
    assert page.status_code == 200 and f"Access of {EMAIL}" in page.text
    assert 'aria-current="page">Customers<' in page.text
    assert f'href="http://127.0.0.1:8003/admin/customers/{CUSTOMER}/profile"' in page.text
    assert f'href="http://127.0.0.1:8001/admin/sales?customer={CUSTOMER}"' in page.text
    course_row = row(page.text, course)
    assert 'data-available="true"' in course_row and "Available</strong> for good" in course_row
    assert "Given by purchase <code>pur_1</code>" in course_row
    assert re.search(r'data-ledger-entry="1" data-action="grant">.*?Course.*?purchase.*?customer', page.text, re.S)
    assert "postsale.purchase.completed" in page.text  # the event that caused it
    picker = re.search(r'<select id="product_id".*?</select>', page.text, re.S).group(0)
    assert "Course" in picker and "Ebook" in picker
    assert 'name="email"' not in page.text  # entitlements knows the customer's email

    stranger = support.get("/admin/access/cus_nobody")
    assert stranger.status_code == 200 and "Nothing was bought or granted" in stranger.text
    assert 'name="email"' in stranger.text
    assert is_missing(support.get("/admin/access/a%20b"))
    assert ebook in picker


def test_support_revokes_after_confirming_and_grants_again_without_touching_billing(support, engine):
    course = made(engine, "Course")
    bought(engine, course)
    [purchase_grant] = grant_ids(engine)
    link = f"{ACCESS}/grants/{purchase_grant}/revoke"
    assert f'href="{link}"' in support.get(ACCESS).text
    confirm = support.get(link)
    assert confirm.status_code == 200
    assert "This removes access to Course now; billing is not touched." in confirm.text
    assert "Yes, remove access to Course now" in confirm.text and 'data-revoke-effect="removes"' in confirm.text
    assert access_of(engine, course).available  # asking changes nothing

    assert support.post(link, data={"note": "asked by email"}, csrf=False).status_code == 403
    assert access_of(engine, course).available
    revoked = support.post(link, data={"note": "asked by email"})
    assert revoked.status_code == 303
    page = support.get(revoked.headers["location"]).text
    assert "The grant of Course is revoked; billing is not touched." in page
    course_row = row(page, course)
    assert 'data-available="false"' in course_row and "Revoked by the seller" in course_row
    newest = re.search(r'<tr data-ledger-entry="(\d+)" data-action="(\w+)">(.*?)</tr>', page, re.S)
    assert newest.group(1, 2) == ("2", "revoke")  # newest first
    assert "revoked by the seller" in newest.group(3) and "asked by email" in newest.group(3)
    assert "seller <code>stf_support</code>" in newest.group(3)
    [event] = published(engine, AccessRevoked)
    assert (event.actor, event.actor_id, event.reason) == ("seller", "stf_support", "revoked by the seller")
    again = support.get(link)
    assert again.status_code == 409 and "there is nothing to revoke" in again.text and "Yes, remove" not in again.text
    assert support.post(link).status_code == 409

    granted = support.post(f"{ACCESS}/grant", data={"product_id": course, "days": "", "until": "", "note": "goodwill"})
    assert granted.status_code == 303
    page = support.get(granted.headers["location"]).text
    assert "Course is granted." in page and 'data-available="true"' in row(page, course)
    assert "granted by hand (“goodwill”)" in row(page, course)
    [_, manual] = published(engine, AccessGranted)
    assert (manual.actor, manual.actor_id, manual.reason) == ("seller", "stf_support", "granted by the seller")
    with Session(engine) as session:
        assert session.exec(select(AccessEntry)).all()[-1].note == "goodwill"


def test_a_grant_for_days_or_until_a_date_and_bad_input_grants_nothing(owner, engine):
    course, ebook = made(engine, "Course"), made(engine, "Ebook", "download")
    bought(engine, course)
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    for data, message in (({"product_id": ""}, "Choose the product to grant."),
                          ({"product_id": "prod_missing"}, "Choose the product to grant."),
                          ({"product_id": ebook, "days": "0"}, "Days: enter a whole number from 1 to 36500"),
                          ({"product_id": ebook, "days": "3", "until": tomorrow},
                           "Give either a number of days or an end date, not both."),
                          ({"product_id": ebook, "until": "2001-01-01"}, "Until: choose a day from today on."),
                          ({"product_id": ebook, "until": "soon"}, "Until: enter a date like 2027-01-31"),
                          ({"product_id": ebook, "note": "a\x00b"}, "Note cannot hold NUL characters."),
                          ({"product_id": ebook, "email": "other@example.com"}, "Email: customer cus_ann has")):
        refused = owner.post(f"{ACCESS}/grant", data=data)
        assert refused.status_code == 422 and message in text_of(refused), data
        assert 'role="alert"' in refused.text
    assert f'<option value="{ebook}" selected>' in refused.text  # what was typed stays
    assert access_of(engine, ebook) is None and len(grant_ids(engine)) == 1

    assert owner.post(f"{ACCESS}/grant", data={"product_id": ebook, "days": "30"}).status_code == 303
    assert owner.post(f"{ACCESS}/grant", data={"product_id": course, "until": tomorrow}).status_code == 303
    ebook_access, course_access = access_of(engine, ebook), access_of(engine, course)
    assert ebook_access.available and (ebook_access.until - utcnow()).days == 29
    assert course_access.available and course_access.until is None  # the purchase still gives it for good
    assert len(course_access.active) == 2
    # Revoking one of two grants says that the other still gives the product.
    seller_grant = next(g.id for g in course_access.active if g.source == "seller")
    confirm = owner.get(f"{ACCESS}/grants/{seller_grant}/revoke")
    assert 'data-revoke-effect="keeps"' in confirm.text and "keeps Course through 1 other grant" in confirm.text
    assert owner.post(f"{ACCESS}/grants/{seller_grant}/revoke").status_code == 303
    assert access_of(engine, course).available

    assert is_missing(owner.get(f"{ACCESS}/grants/grant_nope/revoke"))
    assert is_missing(owner.get(f"/admin/access/cus_other/grants/{seller_grant}/revoke"))


def test_a_customer_who_bought_nothing_needs_an_email_to_be_granted(owner, engine):
    course = made(engine, "Course")
    page = "/admin/access/cus_new"
    form = " ".join(text_of(owner.get(page)).split())
    assert "Granting creates their library under the email address you type below" in form
    assert "The customer's email: their new library is created under it" in form
    assert "Grant the product and create the library" in form
    refused = owner.post(f"{page}/grant", data={"product_id": course})
    assert refused.status_code == 422 and "bought nothing here yet: enter their email" in refused.text
    assert owner.post(f"{page}/grant", data={"product_id": course, "email": "not an email"}).status_code == 422
    granted = owner.post(f"{page}/grant", data={"product_id": course, "email": "New@Example.com"})
    assert granted.status_code == 303
    assert "Access of new@example.com" in owner.get(granted.headers["location"]).text
    assert access_of(engine, course, "cus_new").available


def test_the_ledger_pages_newest_first(owner, engine):
    course = made(engine, "Course")
    bought(engine, course)
    with Session(engine) as session:
        for _ in range(access_views.LEDGER_PAGE_SIZE):
            grant = grants.grant_by_seller(session, customer_id=CUSTOMER, product_id=course)
            grants.revoke_by_seller(session, customer_id=CUSTOMER, grant_id=grant.id)
        session.commit()
    total = 1 + 2 * access_views.LEDGER_PAGE_SIZE
    first = owner.get(ACCESS).text
    seqs = [int(s) for s in re.findall(r'data-ledger-entry="(\d+)"', first)]
    assert seqs == list(range(total, total - access_views.LEDGER_PAGE_SIZE, -1)) and 'rel="next"' in first
    last = owner.get(ACCESS, params={"page": "3"}).text
    assert re.findall(r'data-ledger-entry="(\d+)"', last) == ["1"] and 'rel="next"' not in last
    assert "No older changes" in owner.get(ACCESS, params={"page": "9"}).text
    assert owner.get(ACCESS, params={"page": "x" * 50}).status_code == 200


def test_an_end_date_past_the_year_2199_is_refused_with_a_message(owner, engine):
    course = made(engine, "Course")
    for until in ("9999-12-31", "2200-01-01"):
        refused = owner.post(f"{ACCESS}/grant", data={"product_id": course, "until": until, "email": EMAIL})
        assert refused.status_code == 422, until
        assert "Until: choose a day up to 31 Dec 2199, or leave it empty to grant it for good." in text_of(refused)
        assert f'value="{until}"' in refused.text
    assert access_of(engine, course) is None and grant_ids(engine) == []
    assert 'type="date" max="2199-12-31"' in owner.get(ACCESS).text
    assert owner.post(f"{ACCESS}/grant", data={"product_id": course, "until": "2199-12-31",
                                               "email": EMAIL}).status_code == 303
    assert access_of(engine, course).until.year == 2200


def test_a_grant_posted_twice_grants_once(support, engine):
    course = made(engine, "Course")
    bought(engine, course)
    token = form_token(support.get(ACCESS).text, f"{ACCESS}/grant")
    form = {"product_id": course, "note": "goodwill", "submission": token}
    first, again = support.post(f"{ACCESS}/grant", data=form), support.post(f"{ACCESS}/grant", data=form)
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    assert "Course is granted." in support.get(again.headers["location"]).text
    with Session(engine) as session:
        seller_grants = session.exec(select(Grant).where(Grant.source == "seller")).all()
    assert len(seller_grants) == 1 and len(published(engine, AccessGranted)) == 2  # the purchase's and this one
    # Revoking the one grant by hand leaves only the purchase's: nothing more was given.
    assert support.post(f"{ACCESS}/grants/{seller_grants[0].id}/revoke").status_code == 303
    assert [g.source for g in access_of(engine, course).active] == ["purchase"]

    untokened = support.post(f"{ACCESS}/grant", data={"product_id": course, "note": "again"}, submission=False)
    assert untokened.status_code == 422 and "without its one-time token" in text_of(untokened)
    assert 'value="again"' in untokened.text and len(grant_ids(engine)) == 2


def test_the_notice_after_a_change_names_the_product_from_the_database_never_from_the_address(support, engine):
    course = made(engine, "Course")
    bought(engine, course)
    [purchase_grant] = grant_ids(engine)
    for query in ({"done": "revoked", "product": "<b>Everything</b>"},  # the old address: text from the link
                  {"done": "revoked", "grant": purchase_grant},  # still active: it was not revoked
                  {"done": "granted", "grant": purchase_grant},  # a purchase's grant, not one by hand
                  {"done": "granted", "grant": "grant_nope"}):
        page = support.get(ACCESS, params=query)
        assert page.status_code == 200 and "data-done" not in page.text and "Everything" not in page.text, query
    other = "/admin/access/cus_bob"
    assert support.post(f"{other}/grant", data={"product_id": course, "email": "bob@example.com"}).status_code == 303
    bobs = next(g for g in grant_ids(engine) if g != purchase_grant)
    assert "data-done" not in support.get(ACCESS, params={"done": "granted", "grant": bobs}).text  # not Ann's
    revoked = support.post(f"{ACCESS}/grants/{purchase_grant}/revoke")
    assert revoked.headers["location"] == f"{ACCESS}?done=revoked&grant={purchase_grant}"
    assert "The grant of Course is revoked; billing is not touched." in support.get(revoked.headers["location"]).text

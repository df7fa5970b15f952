"""The back office's first pages across the running services: `make run`'s staff login, the customer
pages with a real buyer in them, and a support user refused what only the owner may do."""

from __future__ import annotations

import html
import re
import uuid

import httpx
import pytest

from postsale_local.devrun import seed_staff_login
from tests.e2e.test_account_setup import buy
from tests.support import eventually, form_field

pytestmark = pytest.mark.e2e


def staff_login(suite, email: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=suite.url("accounts"), timeout=10, headers={"Accept": "text/html"})
    page = browser.get("/admin/login")
    signed_in = browser.post("/admin/login", data={"email": email, "password": password,
                                                   "csrf_token": form_field(page.text, "csrf_token")})
    assert signed_in.status_code == 303, signed_in.text
    return browser


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_the_staff_login_of_make_run_opens_the_customer_pages_and_support_is_kept_to_its_role(suite, store):
    state: dict = {}
    owner_login = seed_staff_login(suite, state)
    assert seed_staff_login(suite, state) == owner_login  # a second run keeps the same login
    owner = staff_login(suite, owner_login["email"], owner_login["password"])

    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    buy(suite, store, email, httpx.Client(timeout=10))
    listed = eventually(lambda: "data-customer-id=" in (page := owner.get("/admin/customers", params={"q": email})).text
                        and page, timeout=60)
    [profile_url] = re.findall(r'href="(/admin/customers/cus_[^"/]+/profile)"', listed.text)
    profile = owner.get(profile_url)
    assert profile.status_code == 200 and email in profile.text and 'data-last-activity' in profile.text

    staff_page = owner.get("/admin/staff")
    added = owner.post("/admin/staff/new", data={"email": "support@example.com", "name": "Sam", "role": "support",
                                                 "password": "support password 1",
                                                 "csrf_token": form_field(staff_page.text, "csrf_token")})
    assert added.status_code == 303
    support = staff_login(suite, "support@example.com", "support password 1")
    assert support.get("/admin/customers").status_code == 200
    refused = support.get("/admin/staff")
    assert refused.status_code == 403 and "Only the store's owner may do this" in html.unescape(refused.text)

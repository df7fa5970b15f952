"""Importing customers from a CSV file in the back office: the file checked row by row with a preview
of what would be imported and what is rejected (and why), nothing added before the owner confirms,
each row then added as a customer added by hand (`CustomerRegistered` with its offers, the welcome
email), the report with the rejected rows to download, and only the owner may do it."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from sqlmodel import Session, select

from postsale.accounts import customer_imports
from postsale.accounts.adapters.tables import Customer, CustomerImport
from postsale.accounts.entrypoints import admin, customer_pages, import_pages
from postsale.contracts import AccountSetupLinkIssued, CustomerRegistered
from postsale.runtime.staff import STAFF_COOKIE
from postsale_local.staff_tokens import StaffTokens
from test_accounts_setup import ACCOUNTS, Accounts

pytestmark = pytest.mark.unit
TOKEN = "admin-token-for-tests-only"
IMPORT = "/admin/customers/import"
GOOD = ("email,first_name,last_name,offer_ids\r\n"
        "Ann@Example.com,Ann,Lee,offer_1a2b3c\r\n"
        "leo@example.com,Leo,Park,offer_1a2b3c;offer_4d5e6f\r\n"
        "mia@example.com,Mia,Holt,\r\n")


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    accounts = Accounts(tmp_path, monkeypatch)
    app = accounts.app
    app.state.admin_token = TOKEN
    accounts.staff = StaffTokens()
    accounts.staff.install(app)
    app.include_router(customer_pages.pages)
    app.include_router(import_pages.pages)
    app.include_router(admin.admin)
    return accounts


def browser(accounts: Accounts, role: str | None = "owner"):
    client = accounts.browser()
    client.headers["Accept"] = "text/html"
    if role:
        client.cookies.set(STAFF_COOKIE, accounts.staff.token(role))
    return client


def upload(client, text: str | bytes, name: str = "customers.csv", csrf: bool = True):
    data = {"csrf_token": client.csrf_token()} if csrf else {}
    content = text.encode() if isinstance(text, str) else text
    return client.post(IMPORT, data=data, files={"file": (name, content, "text/csv")}, csrf=False)


def customer_emails(accounts: Accounts) -> set[str]:
    with Session(accounts.engine) as session:
        return set(session.exec(select(Customer.email)).all())


def rows_of(page: str, table: str) -> dict[int, str]:
    body = re.search(rf"<table {table}>(.*?)</table>", page, re.S)
    return {int(n): html.unescape(re.sub(r"<[^>]+>", " ", row)) for n, row in
            re.findall(r'<tr data-row="(\d+)">(.*?)</tr>', body.group(1), re.S)} if body else {}


def test_a_stranger_is_sent_to_the_login_and_support_may_not_import(accounts):
    stranger = browser(accounts, role=None)
    sent = stranger.get(IMPORT)
    assert sent.status_code == 303 and sent.headers["location"].startswith(f"{ACCOUNTS}/admin/login?next=")

    support = browser(accounts, "support")
    assert "data-import-link" not in support.get("/admin/customers").text  # no button to a page they cannot use
    refused = support.get(IMPORT)
    assert refused.status_code == 403 and "Only the store's owner may do this" in html.unescape(refused.text)
    assert upload(support, GOOD).status_code == 403
    assert customer_emails(accounts) == set() and accounts.published() == []

    owner = browser(accounts)
    assert 'href="/admin/customers/import"' in owner.get("/admin/customers").text
    checked = upload(owner, GOOD)
    preview = checked.headers["location"]
    assert support.get(preview).status_code == 403
    assert support.post(f"{preview}/confirm", data={}).status_code == 403
    assert support.get(f"{preview}/rejected.csv").status_code == 403
    assert customer_emails(accounts) == set()


def test_preview_then_confirm_imports_each_row_as_a_customer_added_by_hand(accounts):
    owner = browser(accounts)
    page = owner.get(IMPORT)
    assert page.status_code == 200 and 'type="file"' in page.text and 'enctype="multipart/form-data"' in page.text
    assert "data-import-format" in page.text and "email,first_name,last_name,offer_ids" in page.text

    checked = upload(owner, GOOD)
    assert checked.status_code == 303 and checked.headers["location"].startswith(f"{IMPORT}/")
    preview = owner.get(checked.headers["location"])
    assert preview.status_code == 200 and "Import preview" in preview.text
    assert rows_of(preview.text, "data-accepted-rows").keys() == {2, 3, 4}
    assert "ann@example.com" in rows_of(preview.text, "data-accepted-rows")[2]  # as it will be kept
    assert "Yes, import 3 customers" in preview.text and "2 of them will be granted the offers" in preview.text
    assert customer_emails(accounts) == set() and accounts.published() == []  # nothing before the confirmation

    confirmed = owner.post(f"{checked.headers['location']}/confirm", data={})
    assert confirmed.status_code == 303 and confirmed.headers["location"].endswith("?done=imported")
    report = owner.get(confirmed.headers["location"]).text
    assert "Import report" in report and "3 customers imported" in report and 'data-imported="3"' in report
    assert 'data-rejected-count="0"' in report and "Yes, import" not in report
    assert customer_emails(accounts) == {"ann@example.com", "leo@example.com", "mia@example.com"}
    registered = {e.email: e for e in accounts.published() if isinstance(e, CustomerRegistered)}
    assert registered["leo@example.com"].offer_ids == ["offer_1a2b3c", "offer_4d5e6f"]
    assert registered["mia@example.com"].offer_ids == [] and registered["ann@example.com"].source == "seller"
    welcomes = [e for e in accounts.published() if isinstance(e, AccountSetupLinkIssued)]
    assert sorted(e.email for e in welcomes) == sorted(registered) and {e.reason for e in welcomes} == {"added_by_seller"}
    assert re.search(r'<a href="/admin/customers/cus_\w+/profile">leo@example.com</a>', report)

    # A second confirmation (a double click, another tab) adds nobody twice.
    again = owner.post(f"{checked.headers['location']}/confirm", data={})
    assert again.status_code == 303 and len([e for e in accounts.published() if isinstance(e, CustomerRegistered)]) == 3
    assert "customers.csv" in owner.get(IMPORT).text and "3 imported" in owner.get(IMPORT).text


def test_rejected_rows_are_shown_with_their_reason_and_downloadable(accounts):
    api = accounts.browser()
    assert api.post("/admin/customers", json={"email": "old@example.com", "first_name": "Old", "last_name": "Timer"},
                    headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
    before = len(accounts.published())
    owner = browser(accounts)
    text = ("first_name,EMAIL,offer_ids\n"  # any order, any case
            "Ann,ann@example.com,\n"
            "Bad,not-an-email,\n"
            "Twice,ANN@example.com,\n"
            "Old,old@example.com,off_1\n"
            f"{'n' * 101},long@example.com,\n"
            "Odd,odd@example.com,off bad!\n"
            "More,more@example.com,off_1,surprise\n"
            ",,\n"  # skipped
            "=HYPERLINK(\"x\"),formula@example.com,off_1;off_2\n"
            ",,\n")
    checked = upload(owner, text)
    location = checked.headers["location"]
    preview = owner.get(location).text
    rejected = rows_of(preview, "data-rejected-rows")
    assert rows_of(preview, "data-accepted-rows").keys() == {2, 10}
    assert "not a valid email address" in rejected[3]
    assert "the same email address as row 2" in rejected[4]
    assert "already a customer" in rejected[5] and "their profile" in rejected[5]
    assert "the first name is longer than 100 characters" in rejected[6]
    assert "“bad!” is not an offer id" in rejected[7]
    assert "more values than the first line names columns (3)" in rejected[8]

    download = owner.get(f"{location}/rejected.csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(download.text)))
    assert lines[0] == ["row", "email", "first_name", "last_name", "offer_ids", "reason"]
    assert [line[0] for line in lines[1:]] == ["3", "4", "5", "6", "7", "8"]
    assert lines[3][1:3] == ["old@example.com", "Old"] and lines[3][4] == "off_1"

    assert owner.post(f"{location}/confirm", data={}).status_code == 303
    report = owner.get(f"{location}?done=imported").text
    assert "2 customers imported" in report and 'data-rejected-count="6"' in report
    assert customer_emails(accounts) == {"old@example.com", "ann@example.com", "formula@example.com"}
    assert len([e for e in accounts.published()[before:] if isinstance(e, CustomerRegistered)]) == 2
    with Session(accounts.engine) as session:
        assert session.exec(select(Customer).where(Customer.email == "formula@example.com")).one().first_name \
            == '=HYPERLINK("x")'  # kept as typed; only the downloaded CSV defuses formulas


def test_a_file_that_cannot_be_imported_says_why_and_adds_nobody(accounts):
    owner = browser(accounts)
    for content, words in (
        ("email,phone\nann@example.com,123\n", "a column Postsale does not know: “phone” (column 2)"),
        ("first_name,last_name\nAnn,Lee\n", "at least email"),
        ("email,email\na@example.com,b@example.com\n", "The column email appears twice"),
        ("", "The file is empty"),
        ("email\n\n", "has no customers"),
        ("email\nann@example.com\n".encode("utf-16"), "not UTF-8 text"),
        ("email\nann\x00@example.com\n", "NUL characters"),
        ("email\n" + "".join(f"c{n}@example.com\n" for n in range(customer_imports.MAX_ROWS + 1)),
         f"more than {customer_imports.MAX_ROWS:,} customers"),
    ):
        refused = upload(owner, content)
        assert refused.status_code == 422, words
        assert words in html.unescape(refused.text) and "Nothing was imported" in refused.text
    no_file = owner.post(IMPORT, data={}, files={"file": ("", b"", "text/csv")})
    assert no_file.status_code == 422 and "Choose a CSV file" in no_file.text
    assert upload(owner, GOOD, csrf=False).status_code == 403
    with Session(accounts.engine) as session:
        assert session.exec(select(CustomerImport)).all() == []
    assert customer_emails(accounts) == set() and accounts.published() == []
    assert owner.get(f"{IMPORT}/nosuchimport").status_code == 404
    assert owner.post(f"{IMPORT}/nosuchimport/confirm", data={}).status_code == 404


def test_a_file_over_the_limit_is_refused_before_it_is_read(accounts):
    owner = browser(accounts)
    big = "email\n" + "x" * (customer_imports.MAX_FILE_BYTES + 70_000) + "@example.com\n"
    refused = upload(owner, big)
    assert refused.status_code == 413 and "larger than 1 MB" in refused.text
    huge = upload(owner, big * 17)  # beyond even the upload's allowance: accounts' guard (add_form_limits) answers
    assert huge.status_code == 413
    # Just over the file limit (the request is within its allowance): the file itself is measured.
    over = upload(owner, "email\n" + "a" * customer_imports.MAX_FILE_BYTES)
    assert over.status_code == 422 and "larger than 1 MB" in over.text
    assert customer_emails(accounts) == set()


def test_someone_who_became_a_customer_after_the_preview_is_set_aside(accounts):
    owner = browser(accounts)
    location = upload(owner, GOOD).headers["location"]
    assert owner.post("/admin/customers/new", data={"email": "leo@example.com", "first_name": "Leo",
                                                    "last_name": "Park"}).status_code == 303
    assert owner.post(f"{location}/confirm", data={}).status_code == 303
    report = owner.get(f"{location}?done=imported").text
    assert "2 customers imported" in report
    assert "became a customer after the preview" in rows_of(report, "data-rejected-rows")[3]
    registered = [e for e in accounts.published() if isinstance(e, CustomerRegistered)]
    assert [e.email for e in registered].count("leo@example.com") == 1

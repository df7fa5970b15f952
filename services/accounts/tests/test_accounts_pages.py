"""Accounts' visitors are people: a mistyped address or a cut link gets a page that says what to do,
while the admin API and the published keys keep answering JSON."""

from __future__ import annotations

import pytest

from test_accounts_setup import Accounts

pytestmark = pytest.mark.unit


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    return Accounts(tmp_path, monkeypatch)


def test_a_wrong_address_is_a_page_with_the_way_to_log_in(accounts):
    browser = accounts.browser()
    for address in ("/nothing-here", "/login/link/extra/parts", "/setup/x"):
        page = browser.get(address)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), address
        assert "This page does not exist" in page.text and 'href="/login"' in page.text
    wrong_method = browser.delete("/login")
    assert wrong_method.status_code == 405 and "text/html" in wrong_method.headers["content-type"]


def test_programs_still_get_json(accounts):
    browser = accounts.browser()
    assert browser.get("/.well-known/nothing").headers["content-type"] == "application/json"
    assert browser.get("/nothing", headers={"Accept": "application/json"}).json() == {"detail": "Not Found"}

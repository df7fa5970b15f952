"""The seller's dark theme in a real browser, on the three customer pages (account setup, login,
library): the colours Chromium computes, screenshots into the test artefacts
(`POSTSALE_TEST_ARTIFACTS`, default `.artifacts/` in the repository), and axe-core finding no
serious or critical accessibility violation on the customer pages."""

from __future__ import annotations

import importlib

import os
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from postsale_local.browser import CHROMIUM_ARGS, ensure_chromium
from tests.e2e.test_account_setup import buy
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = Path(os.environ.get("POSTSALE_TEST_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")) / "theme"
DARK = {"background_color": "#101820", "heading_color": "#ffd166", "body_color": "#f2f4f8",
        "placeholder_color": "#aab2c0", "button_background_color": "#ffd166", "button_text_color": "#101820",
        "heading_font": "serif", "body_font": "sans-serif", "h1_size": 36, "h4_size": 18, "button_width": "full",
        "button_style": "solid", "button_size": "large", "button_radius": 20, "store_name": "Night Owl Studio"}
RGB = {"#101820": "rgb(16, 24, 32)", "#ffd166": "rgb(255, 209, 102)", "#f2f4f8": "rgb(242, 244, 248)"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def computed(page: Page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"e => getComputedStyle(e).getPropertyValue('{prop}')")


def assert_dark_theme(page: Page, name: str) -> None:
    assert computed(page, "body", "background-color") == RGB["#101820"], name
    assert computed(page, "h1", "color") == RGB["#ffd166"], name
    assert "Georgia" in computed(page, "h1", "font-family"), name
    assert computed(page, "h1", "font-size") == "36px", name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_serious_violations(page: Page, name: str) -> None:
    axe = importlib.import_module("axe_playwright_python.sync_playwright")  # pinned in requirements-dev.txt
    results = axe.Axe().run(page)
    serious = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # whichever browser test runs first
    (ARTIFACTS / f"{name}.axe.txt").write_text(results.generate_report())
    assert serious == [], f"{name}: " + "; ".join(f"{v['id']}: {v['help']}" for v in serious)


@pytest.mark.parametrize("suite", ["postgresql"], indirect=True)
def test_a_dark_theme_on_the_setup_login_and_library_pages(suite, store, browser):
    with suite.admin("accounts") as accounts:
        assert accounts.put("/admin/theme", json=DARK).status_code == 200
    try:
        email = f"owl-{uuid.uuid4().hex[:8]}@example.com"
        setup_url, _, _ = buy(suite, store, email, httpx.Client(timeout=10))
        page = browser.new_context().new_page()

        page.goto(setup_url)
        expect(page.get_by_role("heading", name="Create your account")).to_be_visible(timeout=30_000)
        assert_dark_theme(page, "setup")
        assert computed(page, "label[for=first_name]", "color") == RGB["#f2f4f8"]
        assert computed(page, "button[type=submit]", "background-color") == RGB["#ffd166"]
        assert computed(page, "button[type=submit]", "color") == RGB["#101820"]
        assert computed(page, "button[type=submit]", "border-top-left-radius") == "20px"
        expect(page.get_by_text("Night Owl Studio")).to_be_visible()
        no_serious_violations(page, "setup")
        page.get_by_label("First name").fill("Olive")
        page.get_by_label("Last name").fill("Wing")
        page.get_by_label("Password", exact=True).fill("owl-password-1")
        page.get_by_label("Repeat password").fill("owl-password-1")
        page.get_by_role("button", name="Create account").click()

        page.wait_for_url(lambda url: "/library" in url)
        # Entitlements learned the theme from accounts' topic: the same look, without code of its own.
        eventually(lambda: page.reload() or computed(page, "body", "background-color") == RGB["#101820"], timeout=10)
        assert_dark_theme(page, "library")
        no_serious_violations(page, "library")

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(lambda url: "/login" in url)
        assert_dark_theme(page, "login")
        assert computed(page, "#email", "color") == RGB["#f2f4f8"]
        no_serious_violations(page, "login")
        page.goto(f"{suite.url('accounts')}/login/link")
        assert_dark_theme(page, "login-link")
        no_serious_violations(page, "login-link")
    finally:
        with suite.admin("accounts") as accounts:
            accounts.put("/admin/theme", json={})

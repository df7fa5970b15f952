"""The theme editor in the back office: every setting in a form, the customer pages previewed with
unsaved settings, saving through the same use case as the admin API (refused while text would be
unreadable, with a way to correct it), and what the seller is told."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from postsale.accounts.entrypoints import admin, theme_pages
from postsale.accounts.entrypoints.theme_form import FIELDS, corrected, form_values, read
from postsale.contracts import ThemeChanged
from postsale.runtime.accounts_feed import CurrentTheme
from postsale.runtime.staff import STAFF_COOKIE
from postsale.runtime.theme import Theme, problems
from postsale_local.staff_tokens import StaffTokens
from test_accounts_setup import ACCOUNTS, Accounts

pytestmark = pytest.mark.unit
TOKEN = "admin-token-for-tests-only"
EDITOR = "/admin/store-theme"


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    accounts = Accounts(tmp_path, monkeypatch)
    app = accounts.app
    app.state.admin_token = TOKEN
    app.state.theme = CurrentTheme()
    accounts.staff = StaffTokens()
    accounts.staff.install(app)
    app.include_router(theme_pages.pages)
    app.include_router(admin.admin)
    return accounts


def browser(accounts: Accounts, role: str | None = "owner"):
    client = accounts.browser()
    client.headers["Accept"] = "text/html"
    if role:
        client.cookies.set(STAFF_COOKIE, accounts.staff.token(role))
    return client


def saved_theme(accounts: Accounts) -> dict:
    return accounts.browser().get("/admin/theme", headers={"Authorization": f"Bearer {TOKEN}"}).json()


def form_of(page: str) -> dict[str, str]:
    """The editor's fields as the browser would send them back untouched."""
    values = {name: html.unescape(value)
              for name, value in re.findall(r'<input[^>]* name="(\w+)" [^>]*value="([^"]*)"', page)}
    for name, options in re.findall(r'<select id="\w+" name="(\w+)"[^>]*>(.*?)</select>', page, re.S):
        values[name] = re.search(r'<option value="([^"]*)" selected>', options).group(1)
    values.pop("csrf_token", None)
    return values


def frames(page: str) -> dict[str, dict[str, list[str]]]:
    return {name: parse_qs(urlsplit(html.unescape(src)).query)
            for src, name in re.findall(r'<iframe src="([^"]+)"[^>]* data-preview="(\w+)"', page)}


def test_a_stranger_is_sent_to_the_staff_login(accounts):
    stranger = browser(accounts, role=None)
    for path in (EDITOR, f"{EDITOR}/preview?page=login"):
        sent = stranger.get(path)
        assert sent.status_code == 303 and sent.headers["location"].startswith(f"{ACCOUNTS}/admin/login?next=")
    assert stranger.post(EDITOR, data={"action": "save", "background_color": "#101820"}).status_code == 303
    assert saved_theme(accounts) == {}


def test_the_editor_shows_every_setting_and_previews_the_saved_theme(accounts):
    page = browser(accounts, "support").get(EDITOR)
    assert page.status_code == 200 and "Theme of the customer pages" in page.text
    assert 'aria-current="page">Theme<' in page.text
    for field in FIELDS:
        assert f'name="{field}"' in page.text and re.search(rf'<label for="{field}">[^<]+</label>', page.text)
    assert page.text.count('<input type="color"') == 6
    assert form_of(page.text)["background_color"] == "#f6f7f9"  # Postsale's own look before any theme
    assert set(frames(page.text)) == {"setup", "login", "library"}
    assert all(query == {"page": [name]} for name, query in frames(page.text).items())
    assert "frame-src 'self'" in page.headers["content-security-policy"]  # accounts' policy frames nothing else


def test_a_preview_is_the_real_customer_page_with_the_unsaved_settings(accounts):
    staff = browser(accounts, "support")
    settings = {"background_color": "#101820", "heading_color": "#ffd166", "store_name": "Night Owl Studio",
                "logo_url": "https://cdn.example.com/logo.png", "button_radius": "24"}
    for page, words in (("login", "Log in"), ("setup", "Create your account"), ("library", "Your library")):
        preview = staff.get(f"{EDITOR}/preview", params={"page": page, **settings})
        assert preview.status_code == 200 and words in preview.text
        assert "--bg: #101820;" in preview.text and "--heading: #ffd166;" in preview.text
        assert "--button-radius: 24px;" in preview.text and "Night Owl Studio" in preview.text
        assert 'src="https://cdn.example.com/logo.png"' in preview.text
        assert preview.headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
    # Nothing saved: the admin API and the real login page still have Postsale's look.
    assert saved_theme(accounts) == {} and "--bg: #101820" not in accounts.browser().get("/login").text
    assert accounts.published() == []

    assert staff.get(f"{EDITOR}/preview", params={"page": "checkout"}).status_code == 404
    bad = staff.get(f"{EDITOR}/preview", params={"page": "login", "h1_size": "500"})
    assert bad.status_code == 422 and "Page heading size" in bad.text
    assert staff.get(f"{EDITOR}/preview", params={"page": "login", "background_image": "x"}).status_code == 400


def test_preview_then_save_and_every_customer_page_uses_the_theme(accounts):
    staff = browser(accounts, "support")  # any staff may change the theme
    typed = {**form_of(staff.get(EDITOR).text), "background_color": "#fffaf0", "button_background_color": "#8b1e3f",
             "heading_font": "serif", "store_name": "Sunny Shop"}
    previewed = staff.post(EDITOR, data={**typed, "action": "preview"})
    assert previewed.status_code == 200 and 'role="alert"' not in previewed.text
    login_frame = frames(previewed.text)["login"]
    assert login_frame["background_color"] == ["#fffaf0"] and login_frame["button_background_color"] == ["#8b1e3f"]
    assert "body_color" not in login_frame  # untouched colours stay unset: they keep suiting the background
    assert form_of(previewed.text)["store_name"] == "Sunny Shop"
    assert saved_theme(accounts) == {} and accounts.published() == []

    saved = staff.post(EDITOR, data={**form_of(previewed.text), "action": "save"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{EDITOR}?saved=1"
    told = staff.get(saved.headers["location"]).text
    assert "The theme is saved" in told and "use it within moments" in told and "data-theme-saved" in told
    assert saved_theme(accounts) == {"background_color": "#fffaf0", "button_background_color": "#8b1e3f",
                                     "heading_font": "serif", "store_name": "Sunny Shop"}
    [changed] = [e for e in accounts.published() if isinstance(e, ThemeChanged)]
    assert changed.settings["button_background_color"] == "#8b1e3f"
    login = accounts.browser().get("/login").text  # the customer's login page, at once in this process
    assert "--bg: #fffaf0;" in login and "--accent: #8b1e3f;" in login and "Sunny Shop" in login
    assert form_of(told)["background_color"] == "#fffaf0"  # the form shows what is saved


def test_an_unreadable_theme_is_refused_with_why_and_can_be_corrected(accounts):
    owner = browser(accounts)
    typed = {**form_of(owner.get(EDITOR).text), "background_color": "#101820", "body_color": "#333333",
             "heading_color": "#1d2433"}
    refused = owner.post(EDITOR, data={**typed, "action": "save"})
    assert refused.status_code == 422 and "data-theme-refused" in refused.text
    text = html.unescape(refused.text)
    assert "hard to read, so it was not saved" in text and "The body colour #333333 on the background #101820" in text
    assert form_of(refused.text)["body_color"] == "#333333"  # what was typed, to change
    assert saved_theme(accounts) == {} and accounts.published() == []

    fixed = owner.post(EDITOR, data={**form_of(refused.text), "action": "correct"})
    assert fixed.status_code == 200 and "data-theme-corrected" in fixed.text and "data-theme-warnings" not in fixed.text
    assert "Labels and text: #333333 → #ffffff" in html.unescape(fixed.text)
    assert saved_theme(accounts) == {}  # corrected in the form only
    assert owner.post(EDITOR, data={**form_of(fixed.text), "action": "save"}).status_code == 303
    assert saved_theme(accounts) == {"background_color": "#101820"}

    warned = owner.post(EDITOR, data={**form_of(fixed.text), "placeholder_color": "#202020", "action": "preview"})
    assert warned.status_code == 200 and "saving would be refused" in warned.text and "data-correct-theme" in warned.text


def test_bad_input_is_refused_with_a_sentence_and_changes_nothing(accounts):
    owner = browser(accounts)
    typed = form_of(owner.get(EDITOR).text)
    for field, value, words in (("h1_size", "500", "Page heading size: a whole number of pixels from 20 to 64"),
                                ("h4_size", "²", "Subheading size: a whole number"),
                                ("button_style", "3d", "Button style: choose one of Solid, Outline"),
                                ("background_color", "black", "Page background: a colour is written #rrggbb"),
                                ("logo_url", "javascript:alert(1)", "Logo address: the logo must be an https:// address"),
                                ("store_name", "n" * 81, "Store name: at most 80 characters"),
                                ("store_name", "Nul\x00", "without NUL characters")):
        refused = owner.post(EDITOR, data={**typed, field: value, "action": "save"})
        assert refused.status_code == 422, (field, value)
        assert words in html.unescape(refused.text) and "Nothing was saved" in refused.text
    assert owner.post(EDITOR, data={**typed, "action": "save"}, csrf=False).status_code == 403
    assert saved_theme(accounts) == {} and accounts.published() == []


def test_the_form_reads_back_to_the_smallest_theme_with_the_same_look():
    assert read(form_values(Theme()))[0] == Theme()  # saving the untouched form keeps Postsale's look
    # The background alone: the untouched text colours follow it (white on dark), as through the API.
    assert read({**form_values(Theme()), "background_color": "#101820"})[0] == Theme(background_color="#101820")
    assert read({**form_values(Theme()), "body_color": "#1d2433", "default_body_color": ""})[0] == Theme(
        body_color="#1d2433")  # chosen by the seller: kept, though it is the default today
    dark = Theme(background_color="#101820", button_style="outline", button_radius=8, h1_size=40)
    assert read(form_values(dark))[0] == Theme(background_color="#101820", button_style="outline", h1_size=40)
    white = read({**form_values(Theme()), "background_color": "#ffffff", "heading_font": "system"})[0]
    assert white == Theme(background_color="#ffffff")  # the default font is no setting at all
    fixed, changes = corrected(Theme(background_color="#777777", button_background_color="#ffd166",
                                     button_text_color="#ffffff"))
    assert problems(fixed) == [] and {c.label for c in changes} >= {"Labels and text", "Button labels (solid buttons)"}

"""The seller's theme: exactly the seeds' settings, refused when text would be unreadable, published
for every service, and applied to accounts' login and setup pages through base.html."""

from __future__ import annotations

import pytest

from postsale.accounts.entrypoints import admin
from postsale.contracts import ThemeChanged
from postsale.runtime.accounts_feed import CurrentTheme
from postsale.runtime.theme import Theme, contrast, css_variables, is_dark, problems, resolved
from test_accounts_setup import Accounts

pytestmark = pytest.mark.unit
TOKEN = "admin-token-for-tests-only"
DARK = {"background_color": "#101820", "heading_color": "#ffd166", "button_background_color": "#ffd166",
        "button_text_color": "#101820", "heading_font": "serif", "body_font": "sans-serif", "h1_size": 40,
        "h4_size": 18, "button_width": "auto", "button_style": "solid", "button_size": "large", "button_radius": 24,
        "store_name": "Night Owl Studio", "logo_url": "https://cdn.example.com/logo.png"}


@pytest.fixture
def accounts(tmp_path, monkeypatch) -> Accounts:
    accounts = Accounts(tmp_path, monkeypatch)
    accounts.app.state.admin_token = TOKEN
    accounts.app.state.theme = CurrentTheme()
    accounts.app.include_router(admin.admin)
    return accounts


def seller(accounts):
    client = accounts.browser()
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def test_contrast_is_measured_as_wcag_does():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48
    assert is_dark("#101820") and not is_dark("#f6f7f9")


def test_a_dark_background_turns_unset_text_white():
    colours = resolved(Theme(background_color="#101820"))
    assert colours["heading"] == colours["body"] == "#ffffff"
    assert problems(Theme(background_color="#101820")) == []
    assert resolved(Theme(background_color="#ffffff"))["body"] == "#1d2433"


@pytest.mark.parametrize(("theme", "words"), [
    ({"background_color": "#101820", "body_color": "#333333"}, "The body colour #333333 on the background #101820"),
    ({"background_color": "#ffffff", "heading_color": "#eeeeee"}, "The heading colour #eeeeee"),
    ({"placeholder_color": "#dddddd"}, "The placeholder colour #dddddd"),
    ({"button_background_color": "#ffd166", "button_text_color": "#ffffff"}, "The button text colour #ffffff"),
    ({"background_color": "#ffffff", "button_style": "outline", "button_background_color": "#ffee00"},
     "outline button"),
])
def test_a_theme_that_makes_text_unreadable_is_refused_with_what_to_change(accounts, theme, words):
    assert any(words in problem for problem in problems(Theme(**theme)))
    refused = seller(accounts).put("/admin/theme", json=theme)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "hard to read" in detail["message"] and words in detail["message"] and "at least" in detail["message"]
    assert accounts.published() == []


@pytest.mark.parametrize("theme", [{"background_color": "black"}, {"h1_size": 500}, {"button_style": "3d"},
                                   {"logo_url": "javascript:alert(1)"}, {"background_image": "https://x/y.png"},
                                   {"heading_font": "Comic Sans"}])
def test_only_the_settings_of_the_seeds_in_their_ranges_are_taken(accounts, theme):
    assert seller(accounts).put("/admin/theme", json=theme).status_code == 422


def test_the_theme_is_kept_published_and_applied_to_the_login_and_setup_pages(accounts):
    api = seller(accounts)
    assert api.get("/admin/theme").json() == {}
    before = accounts.browser().get("/login").text
    assert "--card-shadow: none" not in before  # Postsale's look

    assert api.put("/admin/theme", json=DARK).status_code == 200
    assert api.get("/admin/theme").json() == DARK
    [changed] = [e for e in accounts.published() if isinstance(e, ThemeChanged)]
    assert changed.settings == DARK and changed.theme_id == "store"

    for path in ("/login", "/login/link", "/setup?token=" + "t" * 200, "/password/reset"):
        page = accounts.browser().get(path).text
        assert "--bg: #101820;" in page and "--heading: #ffd166;" in page and "--text: #ffffff;" in page, path
        assert "--h1-size: 40px;" in page and "Georgia" in page and "--button-width: auto;" in page
        assert 'src="https://cdn.example.com/logo.png"' in page and "Night Owl Studio" in page

    assert api.put("/admin/theme", json={}).status_code == 200  # back to the default look
    assert "--card-shadow: none" not in accounts.browser().get("/login").text


def test_css_variables_follow_each_button_setting():
    outline = css_variables(Theme(button_style="outline", button_background_color="#3554d1", button_size="small",
                                  button_radius=0, button_width="full"))
    assert "--button-bg: transparent;" in outline and "--button-text: #3554d1;" in outline
    assert "--button-radius: 0px;" in outline and "--button-width: 100%;" in outline and ".45rem .9rem" in outline
    assert css_variables(None) == "" and css_variables(Theme()) == ""

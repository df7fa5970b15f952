"""The seller's theme of the customer pages (account setup, login, library): exactly the settings of
the seeds, checked for readable contrast, and turned into the CSS variables `base.html` uses.

Accounts keeps the theme (`PUT /admin/theme`) and publishes it as `ThemeChanged`; every service
process follows it (`postsale.runtime.accounts_feed`) into `app.state.theme`, and every page that
extends `base.html` applies it through `theme_style(request)`, a Jinja global of `templates_for`.
"""

from __future__ import annotations

import re
from typing import Literal

from fastapi import Request
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, field_validator

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
FONTS: dict[str, str] = {
    "system": 'system-ui, -apple-system, "Segoe UI", sans-serif',
    "sans-serif": '"Helvetica Neue", Helvetica, Arial, sans-serif',
    "serif": 'Georgia, "Times New Roman", serif',
    "rounded": '"Trebuchet MS", "Segoe UI", sans-serif',
    "monospace": 'ui-monospace, "SF Mono", Menlo, Consolas, monospace',
}
FontName = Literal["system", "sans-serif", "serif", "rounded", "monospace"]
BUTTON_PADDING = {"small": ".45rem .9rem", "medium": ".75rem 1.25rem", "large": "1rem 1.75rem"}
BUTTON_FONT_SIZE = {"small": ".9rem", "medium": "1rem", "large": "1.15rem"}
MIN_TEXT_CONTRAST = 4.5  # WCAG 2.2 AA, 1.4.3: body text, placeholders, button labels
MIN_LARGE_TEXT_CONTRAST = 3.0  # headings at 24px and more


class Theme(BaseModel):
    """The settings a seller chooses; each unset one keeps Postsale's default."""

    model_config = ConfigDict(extra="forbid")

    background_color: str | None = Field(None, description="Page background, `#rrggbb`. A dark one turns unset "
                                                           "text colours white. No background image.")
    heading_color: str | None = Field(None, description="Font colour of the headings.")
    body_color: str | None = Field(None, description="Font colour of labels and text.")
    placeholder_color: str | None = Field(None, description="Font colour of the placeholders in fields.")
    button_background_color: str | None = Field(None, description="Button background (the label and border of an "
                                                                  "outline button).")
    button_text_color: str | None = Field(None, description="Button label of a solid button.")
    heading_font: FontName | None = None
    body_font: FontName | None = None
    h1_size: int | None = Field(None, ge=20, le=64, description="Size of the page heading, in pixels.")
    h4_size: int | None = Field(None, ge=12, le=32, description="Size of the subheading, in pixels.")
    button_width: Literal["auto", "full"] | None = None
    button_style: Literal["solid", "outline"] | None = None
    button_size: Literal["small", "medium", "large"] | None = None
    button_radius: int | None = Field(None, ge=0, le=40, description="Corner radius of buttons, in pixels.")
    store_name: str | None = Field(None, max_length=80)
    logo_url: str | None = Field(None, max_length=2000, description="An https address of the store's logo.")

    @field_validator("background_color", "heading_color", "body_color", "placeholder_color",
                     "button_background_color", "button_text_color")
    @classmethod
    def _colour(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not HEX.match(value):
            raise ValueError("a colour is written #rrggbb, e.g. #1d2433")
        return value.lower()

    @field_validator("logo_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^\s\"'<>()]+$", value):
            raise ValueError("the logo must be an https:// address")
        return value

    @field_validator("store_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """WCAG relative luminance of `#rrggbb`."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, from 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def is_dark(colour: str) -> bool:
    """White text reads better on it than black does."""
    return contrast(colour, "#ffffff") > contrast(colour, "#000000")


DEFAULT_BACKGROUND = "#f6f7f9"


def resolved(theme: Theme) -> dict[str, str]:
    """Every colour the page uses: the seller's, else a default that suits the background."""
    background = theme.background_color or "#ffffff"
    dark = is_dark(background)
    text = "#ffffff" if dark else "#1d2433"
    button = theme.button_background_color or ("#ffffff" if dark else "#3554d1")
    return {
        "background": background,
        "heading": theme.heading_color or text,
        "body": theme.body_color or text,
        "placeholder": theme.placeholder_color or ("#c3c8d4" if dark else "#6b7280"),
        "button_background": button,
        "button_text": theme.button_text_color or ("#ffffff" if is_dark(button) else "#111111"),
    }


def _hint(colour: str, background: str) -> str:
    return "a lighter one" if is_dark(background) else "a darker one"


def problems(theme: Theme) -> list[str]:
    """Why the theme would make text unreadable (WCAG AA contrast), in words a seller acts on."""
    c = resolved(theme)
    background = c["background"]
    found = []

    def check(name: str, colour: str, against: str, minimum: float, against_name: str = "the background") -> None:
        ratio = contrast(colour, against)
        if ratio < minimum:
            found.append(f"The {name} {colour} on {against_name} {against} has a contrast of {ratio:.1f}:1; "
                         f"at least {minimum:g}:1 is needed to be readable. Choose {_hint(colour, against)}.")

    check("heading colour", c["heading"], background, MIN_LARGE_TEXT_CONTRAST)
    check("body colour", c["body"], background, MIN_TEXT_CONTRAST)
    check("placeholder colour", c["placeholder"], background, MIN_TEXT_CONTRAST)
    if (theme.button_style or "solid") == "solid":
        check("button text colour", c["button_text"], c["button_background"], MIN_TEXT_CONTRAST,
              "the button background")
    else:
        check("button colour (an outline button's label)", c["button_background"], background, MIN_TEXT_CONTRAST)
    return found


def css_variables(theme: Theme | dict | None) -> str:
    """The `:root` rule that applies `theme` to `base.html`; empty for Postsale's default look."""
    if theme is None:
        return ""
    theme = theme if isinstance(theme, Theme) else Theme.model_validate(theme)
    if theme == Theme():
        return ""
    c = resolved(theme)
    outline = theme.button_style == "outline"
    size = theme.button_size or "medium"
    link = c["button_background"] if contrast(c["button_background"], c["background"]) >= MIN_TEXT_CONTRAST else c["body"]
    variables = {
        "--bg": c["background"], "--card": c["background"], "--text": c["body"], "--muted": c["body"],
        "--heading": c["heading"], "--placeholder": c["placeholder"], "--link": link,
        "--accent": c["button_background"],
        "--button-bg": "transparent" if outline else c["button_background"],
        "--button-text": c["button_background"] if outline else c["button_text"],
        "--button-border": c["button_background"],
        "--input-bg": c["background"], "--input-text": c["body"], "--input-border": c["body"],
        "--heading-font": FONTS[theme.heading_font or "system"], "--body-font": FONTS[theme.body_font or "system"],
        "--h1-size": f"{theme.h1_size}px" if theme.h1_size else "1.6rem",
        "--h4-size": f"{theme.h4_size}px" if theme.h4_size else "1rem",
        "--button-width": "auto" if theme.button_width == "auto" else "100%",
        "--button-radius": f"{theme.button_radius}px" if theme.button_radius is not None else "8px",
        "--button-padding": BUTTON_PADDING[size], "--button-font-size": BUTTON_FONT_SIZE[size],
        "--card-shadow": "none",
    }
    return ":root { " + " ".join(f"{name}: {value};" for name, value in variables.items()) + " }"


def current_theme(request: Request) -> Theme | None:
    holder = getattr(request.app.state, "theme", None)
    settings = getattr(holder, "settings", None)
    if not settings:
        return None
    try:
        return Theme.model_validate(settings)
    except ValueError:
        return None  # a theme this version cannot read: the default look rather than a broken page


def theme_style(request: Request) -> Markup:
    """The `<style>` (and the store's name and logo, for `base.html`'s header) of the current theme."""
    theme = current_theme(request)
    css = css_variables(theme)
    return Markup("<style>{}</style>").format(Markup(css)) if css else Markup("")


def store_brand(request: Request) -> dict:
    """The store's name and logo for the page header; empty when the seller set none."""
    theme = current_theme(request)
    if theme is None:
        return {}
    return {"name": theme.store_name, "logo_url": theme.logo_url}

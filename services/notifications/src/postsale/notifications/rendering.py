"""Rendering an email: the seller's version of its template when there is one, else Postsale's
default; Jinja2 in a sandbox (a template reads the variables it is given, nothing else); the HTML
part inside the seller's theme (colours, fonts, buttons, store name and logo).

An email has three parts: the subject, the text body and the HTML body (the content of the
themed layout, `_layout.html`). The defaults are files in `templates/emails/`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, TemplateNotFound, meta
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from sqlmodel import Session

from postsale.notifications.adapters.tables import StoreTheme, TemplateOverride
from postsale.runtime.db import remembered
from postsale.runtime.theme import FONTS, Theme, resolved

log = logging.getLogger(__name__)
DEFAULTS = Path(__file__).parent / "templates" / "emails"
FILES = {"subject": "{}.subject.txt", "text": "{}.txt", "html": "{}.html"}


def _environment(*, html: bool) -> SandboxedEnvironment:
    # StrictUndefined: a misspelt variable is an error the seller sees in the preview, not a blank.
    env = SandboxedEnvironment(loader=FileSystemLoader(DEFAULTS), autoescape=html, undefined=StrictUndefined,
                               keep_trailing_newline=True)
    env.filters["money"] = lambda amount, currency: f"{amount / 100:,.2f} {currency}"
    env.filters["day"] = lambda moment: moment.strftime("%d %B %Y")
    return env


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


class TemplateProblem(ValueError):
    """A template that does not compile or render, in words for the seller."""


@dataclass(frozen=True)
class Parts:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=None)
def default_parts(name: str) -> Parts | None:
    """Postsale's own template of an email; None for a name without one (a seller's own template)."""
    try:
        return Parts(*(_TEXT.loader.get_source(_TEXT, pattern.format(name))[0] for pattern in FILES.values()))
    except TemplateNotFound:
        return None


def variables_of(parts: Parts) -> set[str]:
    """The variables a template reads. Raises TemplateProblem when it does not compile."""
    try:
        return set().union(*(meta.find_undeclared_variables(env.parse(source))
                             for env, source in ((_TEXT, parts.subject), (_TEXT, parts.text), (_HTML, parts.html))))
    except TemplateError as exc:
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from exc


def current_parts(session: Session, name: str) -> Parts | None:
    """The seller's version if edited, else the default; None when the template does not exist.
    Read once per transaction (a batch of events renders many emails from few templates)."""
    def load() -> Parts | None:
        override = session.get(TemplateOverride, name)
        if override is not None:
            return Parts(override.subject, override.text_body, override.html_body)
        return default_parts(name)

    return remembered(session, TemplateOverride, name, load)


@lru_cache(maxsize=512)
def _compiled(html: bool, source: str) -> Template:
    """A template's source compiled once, not per email (Jinja caches files, not strings)."""
    return (_HTML if html else _TEXT).from_string(source)


def render_parts(parts: Parts, context: dict, theme: Theme | None) -> tuple[str, str, str]:
    """Subject, text body and themed HTML body. Raises TemplateProblem."""
    look = theme_context(theme)
    values = {**look, **context}
    try:
        subject = " ".join(_compiled(False, parts.subject).render(values).split())
        text = _compiled(False, parts.text).render(values)
        content = _compiled(True, parts.html).render(values)
        html = _HTML.get_template("_layout.html").render({**values, "content": Markup(content)})
    except TemplateError as exc:
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from exc
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
        raise TemplateProblem(f"the template failed: {type(exc).__name__}: {exc}") from exc
    return subject, text, html


def render(session: Session, name: str, context: dict) -> tuple[str, str, str]:
    """The email as it goes out now: the seller's template, or the default when the seller's fails
    with this email's values (the failure is logged; the customer still gets an email)."""
    theme = store_theme(session)
    parts = current_parts(session, name)
    if parts is None:
        raise LookupError(f"no email template {name!r}")
    try:
        return render_parts(parts, context, theme)
    except TemplateProblem as problem:
        default = default_parts(name)
        if default is None or default == parts:
            raise
        log.error("the seller's template %s failed, the default was sent instead: %s", name, problem)
        return render_parts(default, context, theme)


def store_theme(session: Session) -> Theme | None:
    """The store's theme, read once per transaction."""
    def load() -> Theme | None:
        row = session.get(StoreTheme, "store")
        if row is None or not row.settings:
            return None
        try:
            return Theme.model_validate(row.settings)
        except ValueError:
            return None  # a theme this version cannot read: the default look

    return remembered(session, StoreTheme, "store", load)


def theme_context(theme: Theme | None) -> dict:
    """`style` (inline CSS per element, as email clients need it) and `store` (name, logo)."""
    theme = theme or Theme()
    c = resolved(theme)
    card = c["background"] if theme.background_color else "#ffffff"
    outer = theme.background_color or "#f6f7f9"
    body_font, heading_font = FONTS[theme.body_font or "system"], FONTS[theme.heading_font or "system"]
    outline = theme.button_style == "outline"
    radius = theme.button_radius if theme.button_radius is not None else 8
    button = (f"display: inline-block; background: {'transparent' if outline else c['button_background']}; "
              f"color: {c['button_background'] if outline else c['button_text']}; "
              f"border: 2px solid {c['button_background']}; padding: 12px 28px; border-radius: {radius}px; "
              f"text-decoration: none; font-weight: 600;")
    return {
        "style": {
            "body": f"font-family: {body_font}; color: {c['body']}; background: {outer}; padding: 24px; margin: 0;",
            "card": f"max-width: 520px; margin: auto; background: {card}; border-radius: 12px; padding: 32px;",
            "heading": f"font-family: {heading_font}; color: {c['heading']}; "
                       f"font-size: {theme.h1_size or 22}px; margin-top: 0;",
            "button": button,
            "link": f"color: {c['button_background']};",
            "muted": f"color: {c['body']}; opacity: .75;",
            "store_name": f"font-family: {heading_font}; color: {c['heading']}; font-size: 18px;",
        },
        "store": {"name": theme.store_name, "logo_url": theme.logo_url},
    }

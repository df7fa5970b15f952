"""The back office's theme editor, with a live preview of the customer's pages.

Accounts' pages run no script (its policy is `STRICT_POLICY`), so the preview is rendered by the
server: `/admin/store-theme/preview?page=login&<settings>` is the real customer page (the same
templates, the same `base.html`) with the settings in its address applied instead of the saved
theme. The editor shows the three pages in frames; its "Preview" button sends the form and renders
the editor again with the frames pointing at the typed settings, and "Save" keeps them through the
same use case as the admin API (`theme.set_theme`), which refuses a theme with unreadable text.
Any staff member may change the theme: it moves no money and grants nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session

from postsale.accounts import theme as themes
from postsale.accounts.adapters.tables import StoreTheme
from postsale.accounts.entrypoints import api
from postsale.accounts.entrypoints.staff_pages import templates
from postsale.accounts.entrypoints.theme_form import (BOUNDS, CHOICE_LABELS, COLOURS, FIELDS, LABELS, MAX_FIELD,
                                                      MAX_STORE_NAME, SIZES, DEFAULT_MARKERS, ThemeForm, corrected,
                                                      form_values, read)
from postsale.runtime.clock import as_utc
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.security import STRICT_POLICY
from postsale.runtime.staff import StaffDep, backoffice_context
from postsale.runtime.theme import Theme, css_variables, problems
from postsale.runtime.web import templates_for

pages = APIRouter(prefix="/admin", include_in_schema=False)
EDITOR = "/admin/store-theme"
PREVIEWS = {"setup": "Account creation", "login": "Login", "library": "Library"}
SAMPLE_EMAIL = "ann@example.com"
# The editor frames its own previews (and nothing else); a preview may be framed by our pages only.
EDITOR_POLICY = f"{STRICT_POLICY}; frame-src 'self'"
PREVIEW_POLICY = "; ".join([*(d for d in STRICT_POLICY.split("; ") if not d.startswith("frame-ancestors")),
                            "frame-ancestors 'self'"])


def _preview_style(request: Request) -> Markup:
    css = css_variables(getattr(request.state, "preview_theme", None))
    return Markup("<style>{}</style>").format(Markup(css)) if css else Markup("")


def _preview_brand(request: Request) -> dict:
    theme = getattr(request.state, "preview_theme", None)
    return {"name": theme.store_name, "logo_url": theme.logo_url} if theme else {}


# The customer pages' own templates, whose `base.html` takes the previewed theme, not the saved one.
preview_templates = templates_for(Path(__file__).parents[1] / "templates")
preview_templates.env.globals.update(theme_style=_preview_style, store_brand=_preview_brand,
                                     limits=api.templates.env.globals["limits"])


def preview_url(theme: Theme, page: str) -> str:
    return f"{EDITOR}/preview?{urlencode({'page': page, **theme.model_dump(exclude_none=True)})}"


def _editor(request: Request, session: Session, staff, *, theme: Theme, values: dict[str, str] | None = None,
            errors: list[str] | None = None, refused: str | None = None, warnings: list[str] | None = None,
            corrections: list | None = None, saved: bool = False, status_code: int = 200) -> Response:
    row = session.get(StoreTheme, themes.THEME_ID)
    return templates.TemplateResponse(request, "backoffice/theme.html", {
        **backoffice_context(request, staff, "Theme"),
        "values": values or form_values(theme), "colours": COLOURS, "choices": CHOICE_LABELS, "labels": LABELS,
        "sizes": SIZES, "bounds": BOUNDS, "max_store_name": MAX_STORE_NAME, "max_field": MAX_FIELD,
        "previews": [{"page": page, "title": title, "url": preview_url(theme, page)}
                     for page, title in PREVIEWS.items()],
        "errors": errors or [], "refused": refused, "warnings": warnings or [], "corrections": corrections or [],
        "saved": saved, "saved_at": as_utc(row.updated_at) if row else None,
    }, status_code=status_code, headers={"Content-Security-Policy": EDITOR_POLICY})


@pages.get("/store-theme", response_class=HTMLResponse)
def theme_editor(request: Request, session: SessionDep, staff: StaffDep, saved: str = ""):
    """The saved theme in the form, and the customer pages as they look with it."""
    return _editor(request, session, staff, theme=themes.current(session), saved=saved == "1")


@pages.post("/store-theme", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def change_theme(request: Request, session: SessionDep, staff: StaffDep, form: Annotated[ThemeForm, Form()]):
    """`action=preview` shows the typed settings on the customer pages; `action=correct` replaces the
    unreadable colours and shows that; `action=save` keeps them for every service's customer pages."""
    theme, errors = read({field: getattr(form, field) for field in (*FIELDS, *DEFAULT_MARKERS)})
    if theme is None:  # the form again as typed (cut to its limits); the frames keep showing the saved theme
        typed = {field: getattr(form, field)[:MAX_FIELD].replace("\x00", "") for field in (*FIELDS, *DEFAULT_MARKERS)}
        return _editor(request, session, staff, theme=themes.current(session), values=typed, errors=errors,
                       status_code=422)
    if form.action == "correct":
        theme, changes = corrected(theme)
        return _editor(request, session, staff, theme=theme, corrections=changes, warnings=problems(theme))
    if form.action != "save":
        return _editor(request, session, staff, theme=theme, values=form_values(theme), warnings=problems(theme))
    try:
        row = themes.set_theme(session, theme)
    except themes.UnreadableTheme as exc:
        session.rollback()
        return _editor(request, session, staff, theme=theme, values=form_values(theme), refused=str(exc),
                       status_code=422)
    session.commit()
    holder = getattr(request.app.state, "theme", None)
    if holder is not None:  # this process at once; the others (and the other services) through ThemeChanged
        holder.apply(theme.model_dump(exclude_none=True) or None, row.updated_at)
    return RedirectResponse(f"{EDITOR}?saved=1", status_code=303)


@pages.get("/store-theme/preview", response_class=HTMLResponse)
def theme_preview(request: Request, staff: StaffDep, page: str = "login"):
    """A customer page with the settings of the address applied (the saved theme is left alone).
    Staff only: it would otherwise show any name and logo on the store's own address."""
    if page not in PREVIEWS:
        raise HTTPException(status_code=404, detail=f"There is no preview of {page[:40]!r}: choose "
                                                    f"{', '.join(PREVIEWS)}.")
    unknown = sorted(set(request.query_params) - {*FIELDS, "page"})
    if unknown:
        raise HTTPException(status_code=400, detail=f"A preview takes the theme's settings only, not "
                                                    f"{', '.join(u[:40] for u in unknown[:5])}.")
    theme, errors = read(request.query_params)
    if theme is None:
        raise HTTPException(status_code=422, detail=" ".join(errors))
    request.state.preview_theme = theme
    template, context = {
        "login": ("login.html", {"next": "", "email": ""}),
        "setup": ("setup.html", {"token": "", "email": SAMPLE_EMAIL, "action": "/setup"}),
        "library": ("backoffice/theme_preview_library.html", {"email": SAMPLE_EMAIL}),
    }[page]
    return preview_templates.TemplateResponse(request, template, context, headers={
        "Content-Security-Policy": PREVIEW_POLICY, "X-Frame-Options": "SAMEORIGIN"})

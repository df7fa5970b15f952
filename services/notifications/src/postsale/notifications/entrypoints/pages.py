"""The customer's side of notifications: unsubscribe (RFC 8058 one-click) and email preferences.

The token in the address is the authority (each address has its own, random): a mail client's
one-click POST carries no cookie and no form token, so these forms take no CSRF token, and all
they can do is stop or restart marketing emails to the token's own address.
"""

from __future__ import annotations

from pathlib import Path
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from postsale.notifications import suppressions
from postsale.notifications.adapters.tables import Recipient
from postsale.runtime.db import SessionDep
from postsale.runtime.web import templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
pages = APIRouter(include_in_schema=True, tags=["customer pages"])
NOT_FOUND = "This link is not valid. Use the unsubscribe link of a recent email from us."


def _recipient(session, token: str) -> Recipient:
    row = suppressions.by_token(session, token)
    if row is None:
        raise HTTPException(status_code=404, detail=NOT_FOUND)
    return row


def _page(request: Request, name: str, row: Recipient, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {
        "recipient": row, "unsubscribe_url": suppressions.unsubscribe_url(row),
        "preferences_url": suppressions.preferences_url(row), **context})


@pages.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """Asks to confirm (a link scanner that follows links unsubscribes no one)."""
    row = _recipient(session, token)
    return _page(request, "unsubscribe.html", row, done=row.suppressed_reason == suppressions.UNSUBSCRIBED,
                 refused=row.suppressed_reason == suppressions.REFUSED)


@pages.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """Confirms: the page's button, or a mail client's one-click POST (`List-Unsubscribe=One-Click`)."""
    row = _recipient(session, token)
    suppressions.suppress(session, row.address, suppressions.UNSUBSCRIBED)
    session.commit()
    return _page(request, "unsubscribe.html", row, done=row.suppressed_reason == suppressions.UNSUBSCRIBED,
                 refused=row.suppressed_reason == suppressions.REFUSED)


@pages.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    return _page(request, "preferences.html", _recipient(session, token), saved=False)


@pages.post("/preferences/{token}", response_class=HTMLResponse)
def save_preferences(token: str, request: Request, session: SessionDep,
                     marketing: str = Form(default="", max_length=10)) -> HTMLResponse:
    row = _recipient(session, token)
    if marketing not in ("yes", "no"):
        raise HTTPException(status_code=400, detail="Choose whether you want these emails, then save.")
    if marketing == "yes":
        suppressions.resubscribe(session, row)
    else:
        suppressions.suppress(session, row.address, suppressions.UNSUBSCRIBED)
    session.commit()
    return _page(request, "preferences.html", row, saved=True)

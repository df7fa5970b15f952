"""Notifications' HTTP side: the development mailbox and the email log."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from datetime import datetime

from postsale.notifications.adapters.tables import Email
from postsale.notifications.devmailbox import read_messages
from postsale.runtime.db import SessionDep
from postsale.runtime.web import require_admin, templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
router = APIRouter()
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])


class EmailOut(BaseModel):
    key: str
    template: str
    to: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@admin.get("/emails/{key}", response_model=EmailOut)
def email_status(key: str, session: SessionDep) -> EmailOut:
    """Whether an email went out (e.g. `purchase-confirmation:<purchase id>`)."""
    email = session.get(Email, key)
    if email is None:
        raise HTTPException(status_code=404, detail=f"no email {key}")
    return EmailOut.model_validate(email, from_attributes=True)


def _mailbox_dir(request: Request) -> Path:
    directory = request.app.state.dev_mailbox_dir
    if directory is None:
        raise HTTPException(status_code=404, detail="The development mailbox is not enabled.")
    return Path(directory)


@router.get("/mailbox", response_class=HTMLResponse, include_in_schema=False)
def mailbox_page(request: Request):
    messages = read_messages(_mailbox_dir(request))
    return templates.TemplateResponse(request, "mailbox.html", {"messages": messages})


@router.get("/mailbox/{key}", response_class=HTMLResponse, include_in_schema=False)
def mailbox_message(key: str, request: Request):
    for message_key, message in read_messages(_mailbox_dir(request)):
        if message_key == key:
            html = message.get_body(preferencelist=("html",))
            text = message.get_body(preferencelist=("plain",))
            return templates.TemplateResponse(request, "message.html", {
                "message": message, "html": html.get_content() if html else None,
                "text": text.get_content() if text else "",
            })
    raise HTTPException(status_code=404, detail="No such message in the mailbox.")

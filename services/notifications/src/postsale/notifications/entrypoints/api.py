"""Notifications' HTTP side: the development mailbox and the email log (what was sent, to whom, when)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlmodel import select
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
    customer_id: str | None = None
    subject: str
    status: str = Field(description="`queued`, `sent` (the SMTP relay accepted it), `failed` (given up after its "
                                    "retries, or the relay refused the address) or `suppressed` (a marketing email "
                                    "to an unsubscribed address, not sent).")
    marketing: bool = False
    attempts: int
    last_error: str | None = Field(description="The relay's last answer when it did not accept the email.")
    message_id: str | None = Field(default=None, description="The Message-ID the relay accepted.")
    created_at: datetime
    sent_at: datetime | None


@admin.get("/emails", response_model=list[EmailOut])
def list_emails(session: SessionDep, customer_id: str | None = Query(default=None, pattern=r"^[^\x00]{1,64}$"),
                to: str | None = Query(default=None, pattern=r"^[^\x00]{1,254}$"),
                limit: int = Query(default=100, ge=1, le=500)) -> list[EmailOut]:
    """What was sent to a customer (or an address), newest first: when, and whether the relay accepted it."""
    if not customer_id and not to:
        raise HTTPException(status_code=422, detail="give customer_id or to")
    query = select(Email).order_by(Email.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
    if customer_id:
        query = query.where(Email.customer_id == customer_id)
    if to:
        query = query.where(Email.to == to)
    return [EmailOut.model_validate(e, from_attributes=True) for e in session.exec(query).all()]


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

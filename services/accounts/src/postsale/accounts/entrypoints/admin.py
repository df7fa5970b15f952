"""The seller's admin API of accounts: customers added by hand, help for one who cannot log in."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from postsale.accounts import customers, staff as staffing, theme as themes
from postsale.accounts.adapters.tables import Customer
from postsale.accounts.domain import setup as rules
from postsale.runtime.db import SessionDep
from postsale.runtime.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from postsale.runtime.theme import Theme
from postsale.runtime.web import RequestBody, normalize_email, require_admin

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])
Name = Field(min_length=1, max_length=rules.MAX_NAME_LENGTH)


class NewCustomer(RequestBody):
    email: str = Field(max_length=rules.MAX_EMAIL_LENGTH)
    first_name: str = Name
    last_name: str = Name
    offer_ids: list[str] = Field(default_factory=list, max_length=50,
                                 description="Offers to grant, for checkout to turn into purchases without payment.")


class AccountEmailOut(BaseModel):
    key: str
    template: str
    to: str
    status: Literal["sent", "failed"]
    relay_accepted: bool = Field(description="The SMTP relay took the email.")
    at: datetime
    attempts: int | None = None
    error: str | None = None


class LastActivity(BaseModel):
    login: datetime | None = None
    library_visit: datetime | None = None
    lesson: datetime | None = None
    download: datetime | None = None


class CustomerOut(BaseModel):
    id: str
    email: str
    first_name: str
    last_name: str
    source: str = Field(description="`purchase`, or `seller` for a customer added by hand.")
    created_at: datetime
    activated: bool = Field(description="The account is set up (a password was chosen).")
    activated_at: datetime | None
    has_password: bool
    requested_offer_ids: list[str]
    last_activity_at: datetime | None
    last_activity: LastActivity
    account_emails: list[AccountEmailOut] = Field(description="Setup, login, reset and email-change emails, newest "
                                                              "first, as notifications reported them.")


class LinkSent(BaseModel):
    sent: Literal["setup_link", "login_link"]
    email: str


def _customer(session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id) if len(customer_id) <= 100 else None
    if customer is None:
        raise HTTPException(status_code=404, detail=f"no customer {customer_id[:100]}")
    return customer


@admin.post("/customers", response_model=CustomerOut, status_code=201)
def add_customer(body: NewCustomer, session: SessionDep) -> dict:
    """Adds a customer by hand; they get the welcome email with their login information."""
    email = normalize_email(body.email)
    if email is None:
        raise HTTPException(status_code=422, detail="email: not an email address")
    if any(len(offer_id) > 100 or not offer_id for offer_id in body.offer_ids):
        raise HTTPException(status_code=422, detail="offer_ids: each is an offer id of at most 100 characters")
    try:
        customer = customers.add_customer(session, email=email, first_name=body.first_name, last_name=body.last_name,
                                          offer_ids=list(dict.fromkeys(body.offer_ids)))
    except customers.CustomerExists as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return customers.customer_view(session, customer)


@admin.get("/customers/{customer_id}", response_model=CustomerOut)
def customer_detail(customer_id: str, session: SessionDep) -> dict:
    """Profile, activation, last activity and account emails (and whether the relay accepted them)."""
    return customers.customer_view(session, _customer(session, customer_id))


@admin.post("/customers/{customer_id}/resend-setup-link", response_model=LinkSent)
def resend_setup_link(customer_id: str, session: SessionDep) -> LinkSent:
    """For a customer who cannot log in: a new setup link, or a login link and code once the account is set up."""
    customer = _customer(session, customer_id)
    sent = customers.resend_link(session, customer)
    session.commit()
    return LinkSent(sent=sent, email=customer.email)


class NewStaffMember(RequestBody):
    email: str = Field(max_length=rules.MAX_EMAIL_LENGTH)
    name: str = Field(default="", max_length=rules.MAX_NAME_LENGTH)
    role: Literal["owner", "support"]
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class StaffMemberOut(BaseModel):
    id: str
    email: str
    name: str
    role: Literal["owner", "support"]


@admin.post("/staff", response_model=StaffMemberOut, status_code=201)
def add_staff_member(body: NewStaffMember, session: SessionDep) -> StaffMemberOut:
    """Adds a back-office user who logs in at `/admin/login` (`make run` adds the owner this way)."""
    email = normalize_email(body.email)
    if email is None:
        raise HTTPException(status_code=422, detail="email: not an email address")
    try:
        member = staffing.add_staff(session, email=email, name=body.name, role=body.role, password=body.password)
    except staffing.StaffRefused as exc:
        raise HTTPException(status_code=409 if isinstance(exc, staffing.StaffExists) else 422,
                            detail=str(exc)) from exc
    session.commit()
    return StaffMemberOut(id=member.id, email=member.email, name=member.name, role=member.role)


@admin.get("/theme", response_model=Theme, response_model_exclude_none=True)
def get_theme(session: SessionDep) -> Theme:
    """The theme of the customer pages (account setup, login, library); unset settings are Postsale's defaults."""
    return themes.current(session)


@admin.put("/theme", response_model=Theme, response_model_exclude_none=True)
def put_theme(body: Theme, request: Request, session: SessionDep) -> Theme:
    """Sets the whole theme (a setting left out goes back to its default). A theme whose text would be
    unreadable (WCAG AA contrast) is refused with 422 and what to change."""
    try:
        row = themes.set_theme(session, body)
    except themes.UnreadableTheme as exc:
        raise HTTPException(status_code=422, detail={"message": str(exc), "problems": exc.problems}) from exc
    session.commit()
    holder = getattr(request.app.state, "theme", None)
    if holder is not None:  # this process at once; the others (and other services) through ThemeChanged
        holder.apply(body.model_dump(exclude_none=True) or None, row.updated_at)
    return body

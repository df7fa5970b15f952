"""The seller's email templates and email settings (admin API)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field, field_validator

from postsale.notifications import catalogue, rendering, templates
from postsale.notifications.adapters.tables import EmailSettings, TemplateOverride
from postsale.notifications.config import seller_addresses
from postsale.notifications.emails import seller_addresses as current_seller_addresses
from postsale.notifications.rendering import Parts, TemplateProblem
from postsale.runtime.clock import utcnow
from postsale.runtime.db import SessionDep
from postsale.runtime.web import RequestBody, require_admin

admin_templates = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin: emails"])
TemplateName = Path(pattern=catalogue.NAME.pattern, description="An email, e.g. `purchase_confirmation`; a new "
                                                               "name makes one of the seller's own templates.")


class VariableOut(BaseModel):
    name: str
    description: str


class TemplateSummary(BaseModel):
    name: str
    title: str
    audience: str = Field(description="`customer` or `seller`.")
    marketing: bool = Field(description="Carries an unsubscribe link; not sent to a suppressed address.")
    edited: bool


class TemplateOut(TemplateSummary):
    subject: str
    html: str = Field(description="The content of the HTML part; the seller's theme wraps it.")
    text: str
    variables: list[VariableOut]
    updated_at: datetime | None


class TemplateIn(RequestBody):
    subject: str = Field(min_length=1, max_length=templates.MAX_SUBJECT)
    html: str = Field(min_length=1, max_length=templates.MAX_BODY)
    text: str = Field(min_length=1, max_length=templates.MAX_BODY)


class PreviewIn(RequestBody):
    draft: TemplateIn | None = Field(default=None, description="Preview this instead of the saved template.")
    variables: dict[str, object] = Field(default_factory=dict, max_length=50,
                                         description="Values that replace the examples.")


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str


class TestSendIn(RequestBody):
    to: str = Field(min_length=3, max_length=254)

    @field_validator("to")
    @classmethod
    def _address(cls, value: str) -> str:
        return _addresses([value])[0]


class TestSendOut(BaseModel):
    email_key: str = Field(description="The test email in the email log.")


def _addresses(values: list[str]) -> list[str]:
    """Plain email addresses, each once; ValueError naming one that is not."""
    for value in values:
        try:
            parsed = seller_addresses(value) if "," not in value and "\x00" not in value else ()
        except ValueError:
            parsed = ()
        if len(parsed) != 1:
            raise ValueError(f"{value!r} is not an email address")
    return list(seller_addresses(values))


def _summary(session, name: str) -> dict:
    spec = catalogue.spec_of(name)
    return {"name": name, "title": spec.title, "audience": spec.audience, "marketing": spec.marketing,
            "edited": session.get(TemplateOverride, name) is not None}


def _template(session, name: str) -> TemplateOut:
    parts = rendering.current_parts(session, name)
    if parts is None:
        raise HTTPException(status_code=404, detail=f"no email template {name}")
    row = session.get(TemplateOverride, name)
    variables = {**catalogue.spec_of(name).variables}
    return TemplateOut(**_summary(session, name), subject=parts.subject, html=parts.html, text=parts.text,
                       variables=[VariableOut(name=k, description=v.description) for k, v in variables.items()]
                       + [VariableOut(name=k, description=d) for k, d in catalogue.COMMON.items()],
                       updated_at=row.updated_at if row else None)


@admin_templates.get("/templates", response_model=list[TemplateSummary])
def list_templates(session: SessionDep) -> list[TemplateSummary]:
    """Every email Postsale sends, and the seller's own templates."""
    return [TemplateSummary(**_summary(session, name)) for name in templates.names(session)]


@admin_templates.get("/templates/{name}", response_model=TemplateOut)
def get_template(session: SessionDep, name: str = TemplateName) -> TemplateOut:
    """The template as it is sent now (the seller's version, else the default), with its variables."""
    return _template(session, name)


@admin_templates.put("/templates/{name}", response_model=TemplateOut)
def put_template(body: TemplateIn, session: SessionDep, name: str = TemplateName) -> TemplateOut:
    """Saves the seller's version: Jinja2 in a sandbox, reading only the variables the email offers;
    refused (422, saying why) when it does not render with the example values."""
    try:
        templates.save(session, name, Parts(body.subject, body.text, body.html))
    except TemplateProblem as problem:
        session.rollback()
        raise HTTPException(status_code=422, detail=str(problem)) from problem
    session.commit()
    return _template(session, name)


@admin_templates.delete("/templates/{name}", status_code=204)
def reset_template(session: SessionDep, name: str = TemplateName) -> None:
    """Back to Postsale's default (the seller's own template is deleted)."""
    try:
        reset = templates.reset(session, name)
    except templates.TemplateInUse as in_use:
        raise HTTPException(status_code=409, detail=str(in_use)) from in_use
    if not reset:
        raise HTTPException(status_code=404, detail=f"the template {name} was not edited")
    session.commit()


@admin_templates.post("/templates/{name}/preview", response_model=PreviewOut)
def preview_template(session: SessionDep, body: PreviewIn | None = None, name: str = TemplateName) -> PreviewOut:
    """The email as it would be sent, with example values (or those given), in the seller's theme."""
    body = body or PreviewIn()
    draft = Parts(body.draft.subject, body.draft.text, body.draft.html) if body.draft else None
    try:
        subject, text, html = templates.preview(session, name, draft, body.variables)
    except LookupError as missing:
        raise HTTPException(status_code=404, detail=f"no email template {name}") from missing
    except TemplateProblem as problem:
        raise HTTPException(status_code=422, detail=str(problem)) from problem
    return PreviewOut(subject=subject, text=text, html=html)


@admin_templates.post("/templates/{name}/test-send", response_model=TestSendOut, status_code=202)
def test_send(body: TestSendIn, session: SessionDep, name: str = TemplateName) -> TestSendOut:
    """Sends the email with example values to an address of the seller's, subject marked `[Test]`."""
    if not templates.exists(session, name):
        raise HTTPException(status_code=404, detail=f"no email template {name}")
    try:
        key = templates.send_test(session, name, body.to)
    except TemplateProblem as problem:
        raise HTTPException(status_code=422, detail=str(problem)) from problem
    session.commit()
    return TestSendOut(email_key=key)


class EmailSettingsIO(RequestBody):
    seller_addresses: list[str] = Field(default_factory=list, max_length=20, description=(
        "Where the seller's emails go (each sale, failed payments, failed third-party calls); empty: "
        "`NOTIFICATIONS_SELLER_EMAILS`."))
    notify_each_sale: bool = Field(default=True, description="The seller's notification of each sale.")

    @field_validator("seller_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return _addresses(value) if value else []


@admin_templates.get("/email-settings", response_model=EmailSettingsIO)
def get_email_settings(session: SessionDep) -> EmailSettingsIO:
    row = session.get(EmailSettings, "store")
    return EmailSettingsIO(seller_addresses=list(current_seller_addresses(session)),
                           notify_each_sale=row.notify_each_sale if row else True)


@admin_templates.put("/email-settings", response_model=EmailSettingsIO)
def put_email_settings(body: EmailSettingsIO, session: SessionDep) -> EmailSettingsIO:
    row = session.get(EmailSettings, "store") or EmailSettings()
    row.seller_addresses, row.notify_each_sale, row.updated_at = body.seller_addresses, body.notify_each_sale, utcnow()
    session.add(row)
    session.commit()
    return get_email_settings(session)

"""Follow-up sequences and follow-up offer rules (admin API), and the follow-ups' lifecycle
simulator for test customers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator
from sqlmodel import select

from postsale.notifications import rules, sequences, templates
from postsale.notifications.catalogue import NAME
from postsale.notifications.adapters.tables import FollowUp, FollowUpRule, PurchaseRecord, Sequence
from postsale.notifications.domain.followups import MAX_DELAY_HOURS, MAX_STEPS
from postsale.runtime.db import SessionDep
from postsale.runtime.web import Moment, RequestBody, require_admin

admin_followups = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin: follow-ups"])
ID = r"^[A-Za-z0-9_.:-]{1,64}$"
Id = Field(pattern=ID)
TemplateName = Field(pattern=NAME.pattern, description="An email template (`GET /admin/templates`), usually one of "
                                                       "the seller's own.")


class StepIn(RequestBody):
    delay_hours: int | None = Field(default=None, ge=0, le=MAX_DELAY_HOURS, description="After the purchase.")
    delay_days: int | None = Field(default=None, ge=0, le=MAX_DELAY_HOURS // 24, description="Or in days.")
    template: str = TemplateName

    @model_validator(mode="after")
    def _one_delay(self) -> "StepIn":
        if (self.delay_hours is None) == (self.delay_days is None):
            raise ValueError("give the delay in delay_hours or in delay_days")
        return self

    @property
    def hours(self) -> int:
        return self.delay_hours if self.delay_hours is not None else (self.delay_days or 0) * 24


class SequenceIn(RequestBody):
    offer_id: str = Id
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)


class StepOut(BaseModel):
    delay_hours: int
    template: str


class SequenceOut(BaseModel):
    id: str
    offer_id: str
    name: str
    steps: list[StepOut]
    created_at: datetime


def _known_templates(session, names: list[str]) -> None:
    for name in sorted(set(names)):
        problem = templates.follow_up_problem(session, name)
        if problem is not None:
            raise HTTPException(status_code=422, detail=f"{problem} (PUT /admin/templates/{{name}})")


def _sequence_out(sequence: Sequence) -> SequenceOut:
    return SequenceOut(id=sequence.id, offer_id=sequence.offer_id, name=sequence.name,
                       steps=[StepOut(**s) for s in sequence.steps], created_at=sequence.created_at)


@admin_followups.post("/sequences", response_model=SequenceOut, status_code=201)
def create_sequence(body: SequenceIn, session: SessionDep) -> SequenceOut:
    """A follow-up sequence of an offer: each step an email template sent its delay after each
    purchase made from now on. It stops for a customer whose access to the offer's products ends,
    and sends nothing to an unsubscribed address."""
    _known_templates(session, [s.template for s in body.steps])
    sequence = sequences.create_sequence(session, offer_id=body.offer_id, name=body.name, steps=[
        {"delay_hours": s.hours, "template": s.template} for s in sorted(body.steps, key=lambda s: s.hours)])
    session.commit()
    return _sequence_out(sequence)


@admin_followups.get("/sequences", response_model=list[SequenceOut])
def list_sequences(session: SessionDep, offer_id: str | None = Query(default=None, pattern=ID)) -> list[SequenceOut]:
    query = select(Sequence).order_by(Sequence.created_at)
    if offer_id:
        query = query.where(Sequence.offer_id == offer_id)
    return [_sequence_out(s) for s in session.exec(query).all()]


@admin_followups.delete("/sequences/{sequence_id}", status_code=204)
def delete_sequence(session: SessionDep, sequence_id: str = PathParam(pattern=ID)) -> None:
    """Stops the sequence: its steps still due send nothing."""
    sequence = session.get(Sequence, sequence_id)
    if sequence is None:
        raise HTTPException(status_code=404, detail=f"no sequence {sequence_id}")
    session.delete(sequence)
    session.commit()


class RuleIn(RequestBody):
    trigger: Literal["bought_without", "no_login", "upsell_declined", "product_completed"] = Field(description=(
        "`bought_without`: bought `offer_id` but not `other_offer_id` within `days`; `no_login`: has not logged in "
        "`days` after buying `offer_id`; `upsell_declined`: declined the upsell `offer_id` (empty: any), sent "
        "`days` later (0: at once); `product_completed`: finished the product `product_id`, sent `days` later."))
    offer_id: str | None = Field(default=None, pattern=ID)
    other_offer_id: str | None = Field(default=None, pattern=ID)
    product_id: str | None = Field(default=None, pattern=ID)
    days: int = Field(default=0, ge=0, le=365)
    template: str = TemplateName
    link_offer_id: str = Field(pattern=ID, description="The offer the email links to.")

    @model_validator(mode="after")
    def _fields_of_trigger(self) -> "RuleIn":
        needed = {"bought_without": ("offer_id", "other_offer_id"), "no_login": ("offer_id",),
                  "upsell_declined": (), "product_completed": ("product_id",)}[self.trigger]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"the trigger {self.trigger} needs {', '.join(missing)}")
        if self.trigger in ("bought_without", "no_login") and self.days < 1:
            raise ValueError(f"the trigger {self.trigger} needs days (1 or more)")
        return self


class RuleOut(RuleIn):
    id: str
    created_at: datetime


@admin_followups.post("/rules", response_model=RuleOut, status_code=201)
def create_rule(body: RuleIn, session: SessionDep) -> RuleOut:
    """A follow-up offer by customer action, for what happens from now on; sent once per cause,
    never to a customer who has the linked offer already, nor to an unsubscribed address."""
    _known_templates(session, [body.template])
    rule = rules.create_rule(session, **body.model_dump())
    session.commit()
    return RuleOut.model_validate(rule, from_attributes=True)


@admin_followups.get("/rules", response_model=list[RuleOut])
def list_rules(session: SessionDep) -> list[RuleOut]:
    return [RuleOut.model_validate(r, from_attributes=True)
            for r in session.exec(select(FollowUpRule).order_by(FollowUpRule.created_at)).all()]


@admin_followups.delete("/rules/{rule_id}", status_code=204)
def delete_rule(session: SessionDep, rule_id: str = PathParam(pattern=ID)) -> None:
    rule = session.get(FollowUpRule, rule_id)
    if rule is None:
        raise HTTPException(status_code=404, detail=f"no rule {rule_id}")
    session.delete(rule)
    session.commit()


class FollowUpRun(RequestBody):
    customer_id: str = Id
    until: Moment = Field(description="Run what falls due up to this moment.")


class FollowUpRunOut(BaseModel):
    ran: int = Field(description="How many follow-ups fell due on the way (sent or not).")
    pending: list[str] = Field(description="The customer's follow-ups still to come.")


@admin_followups.post("/sandbox/follow-ups", response_model=FollowUpRunOut, tags=["sandbox"])
def run_follow_ups(body: FollowUpRun, request: Request, session: SessionDep) -> FollowUpRunOut:
    """The lifecycle simulator of follow-ups: runs a test customer's follow-ups (sequence steps,
    rule checks, access-ending reminders) that fall due by `until`, in order, each at its own due
    time, as they would have. Only for a customer whose every purchase was made on the sandbox,
    so no real customer gets an email early."""
    providers = set(session.exec(select(PurchaseRecord.provider).where(
        PurchaseRecord.customer_id == body.customer_id)).all())
    if not providers:
        raise HTTPException(status_code=404, detail=f"no purchases of customer {body.customer_id}")
    if providers != {"sandbox"}:
        raise HTTPException(status_code=409, detail="The simulator runs only for a customer who bought on the "
                                                    "sandbox, where no money moves.")
    scheduler = request.app.state.follow_up_scheduler
    ran = 0
    while batch := scheduler.run_due(until=body.until, where=FollowUp.customer_id == body.customer_id):
        ran += batch
    session.expire_all()
    pending = session.exec(select(FollowUp.id).where(FollowUp.customer_id == body.customer_id,
                                                     FollowUp.done_at.is_(None))  # type: ignore[union-attr]
                           .order_by(FollowUp.due_at)).all()
    return FollowUpRunOut(ran=ran, pending=list(pending))

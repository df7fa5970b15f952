"""The back office's follow-ups, served by notifications: follow-up sequences (emails at delays after
an offer's purchase) and follow-up rules (an email with an offer when a customer did, or did not do,
something). Any staff member may list them; only the owner creates and deletes them (OwnerDep),
as they decide what customers are emailed. Deleting asks first.

A creation form carries a submission token, stored unique on the row it makes: the form sent
twice (a double click, a reload after posting) makes one sequence or rule, and both answers lead
to the same page. Input is checked with the JSON admin API's models (`admin_followups`), so both refuse the same
things, and stored with the same use cases (`sequences`, `rules`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.notifications import rules, sequences, templates
from postsale.notifications.adapters.tables import FollowUpRule, Sequence
from postsale.notifications.domain.followups import MAX_DELAY_HOURS, MAX_STEPS
from postsale.notifications.entrypoints import admin_followups
from postsale.notifications.entrypoints.backoffice_forms import RESENT, problem_of, show, submission_of
from postsale.notifications.entrypoints.pages import templates as page_templates
from postsale.runtime.backoffice import is_submission_token, not_found, page_number, page_of_query, typed_again
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffDep, StaffSession

pages = APIRouter(prefix="/admin/mail", include_in_schema=False)
ACTIVE = "Emails"
STEP_ROWS, MORE_STEP_ROWS = 5, MAX_STEPS
MAX_ID, MAX_NAME = 64, 200
TRIGGERS = {
    "bought_without": "Bought an offer, but not a second offer within some days",
    "no_login": "Has not logged in some days after buying an offer",
    "upsell_declined": "Declined an upsell (any, or one offer)",
    "product_completed": "Finished every lesson of a product",
}
NEEDED = {"bought_without": ("offer_id", "other_offer_id"), "no_login": ("offer_id",), "upsell_declined": (),
          "product_completed": ("product_id",)}
LABELS = {"offer_id": "Offer", "name": "Name", "steps": "Steps", "trigger": "When", "other_offer_id": "Second offer",
          "product_id": "Product", "days": "Days", "template": "Email template", "link_offer_id": "Offer it links to",
          "delay_hours": "Delay", "delay_days": "Delay"}


def _ids_ok(*values: str) -> bool:
    return all(len(v) <= MAX_ID and "\x00" not in v for v in values)


def _base(model) -> str:
    return "/admin/mail/sequences" if model is Sequence else "/admin/mail/rules"


def _listed(request: Request, session: Session, staff: StaffSession, model, template: str, page: str,
            done: str | None) -> Response:
    number = page_number(page)
    found, more = page_of_query(session, select(model).order_by(model.created_at.desc(), model.id), number)
    base = _base(model)
    # Templates that cannot be a follow-up (deleted since, or saved before that was checked): the
    # steps that send them send nothing, and the page says so.
    used = {step["template"] for row in found for step in row.steps} if model is Sequence else \
        {row.template for row in found}
    unfit = {name for name in used if templates.follow_up_problem(session, name) is not None}
    return show(request, staff, ACTIVE, template, {
        "rows": found, "done": done, "triggers": TRIGGERS, "page": number, "unfit": unfit,
        "previous_url": f"{base}?page={number - 1}" if number > 1 else None,
        "next_url": f"{base}?page={number + 1}" if more else None})


def _delete(request: Request, session: Session, model, row_id: str, what: str) -> Response:
    row = session.get(model, row_id) if _ids_ok(row_id) else None
    if row is None:
        return not_found(request, page_templates, f"There is no {what} {row_id[:MAX_ID]}: it may have been deleted "
                                                  "already.")
    session.delete(row)
    session.commit()
    return RedirectResponse(f"{_base(model)}?done=deleted", status_code=303)


def _made_once(session: Session, model, row, submission: str) -> Response:
    """Stores `row` under the form's submission; the same submission made one already (a second
    click, a reload after posting): nothing more, and the same page as the first answer."""
    row.submission = submission
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
    return RedirectResponse(f"{_base(model)}?done=created", status_code=303)


def _made_already(session: Session, model, submission: str) -> bool:
    return session.exec(select(model.id).where(model.submission == submission)).first() is not None


# --- sequences ---------------------------------------------------------------------------------


@pages.get("/sequences", response_class=HTMLResponse)
def sequences_page(request: Request, session: SessionDep, staff: StaffDep, page: str = "1", done: str = ""):
    """The follow-up sequences, newest first."""
    said = {"created": "The sequence is saved: purchases made from now on get its emails.",
            "deleted": "The sequence is deleted: its steps still due send nothing."}.get(done)
    return _listed(request, session, staff, Sequence, "backoffice/mail_sequences.html", page, said)


def _sequence_form(request: Request, session: Session, owner: StaffSession, *, form: dict | None = None,
                   rows: int = STEP_ROWS, error: str | None = None, status_code: int = 200,
                   submission: str = "") -> Response:
    form = form or {"offer_id": "", "name": "", "steps": []}
    steps = form["steps"] + [{"delay": "", "unit": "days", "template": ""}] * max(0, rows - len(form["steps"]))
    return show(request, owner, ACTIVE, "backoffice/mail_sequence_new.html", {
        "form": form, "steps": steps, "templates": templates.follow_up_names(session), "error": error,
        "submission": submission_of(submission), "more_rows": len(steps) < MORE_STEP_ROWS,
        "max_days": MAX_DELAY_HOURS // 24}, status_code=status_code)


@pages.get("/sequences/new", response_class=HTMLResponse)
def new_sequence_page(request: Request, session: SessionDep, owner: OwnerDep, rows: str = ""):
    return _sequence_form(request, session, owner, rows=MORE_STEP_ROWS if rows == "more" else STEP_ROWS)


def _steps(delays: list[str], units: list[str], names: list[str]) -> tuple[list[dict], list, str | None]:
    """The rows typed (to show again), the steps they make, and what is wrong with them."""
    typed, steps = [], []
    if not len(delays) == len(units) == len(names):  # each row of the page sends all three
        return typed, steps, "Steps: each row needs its delay, its unit and its template; send the page's form."
    for number, (delay, unit, name) in enumerate(zip(delays[:MORE_STEP_ROWS], units, names), start=1):
        typed.append({"delay": typed_again(delay, 6), "unit": unit if unit in ("days", "hours") else "days",
                      "template": typed_again(name, MAX_ID)})
        if not delay.strip() and not name:
            continue
        if unit not in ("days", "hours"):
            return typed, steps, f"Step {number}: choose days or hours."
        if not (delay.strip().isascii() and delay.strip().isdigit() and len(delay.strip()) <= 6):
            return typed, steps, f"Step {number}: give the delay as a whole number of days or hours."
        if not name:
            return typed, steps, f"Step {number}: choose the email template it sends."
        amount = int(delay.strip())
        try:
            steps.append(admin_followups.StepIn(template=name, **({"delay_hours": amount} if unit == "hours"
                                                                   else {"delay_days": amount})))
        except ValidationError as invalid:  # whichever of the row's fields, the row is named
            return typed, steps, problem_of(invalid, dict.fromkeys(("", *admin_followups.StepIn.model_fields),
                                                                   f"Step {number}"))
    return typed, steps, None if steps else "Steps: give at least one step, with its delay and email template."


@pages.post("/sequences/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def create_sequence(request: Request, session: SessionDep, owner: OwnerDep, offer_id: Annotated[str, Form()] = "",
                    name: Annotated[str, Form()] = "", delay: Annotated[list[str], Form()] = [],  # noqa: B006
                    unit: Annotated[list[str], Form()] = [], template: Annotated[list[str], Form()] = [],  # noqa: B006
                    submission: Annotated[str, Form()] = ""):
    """A sequence for the offer's purchases from now on, its steps sorted by delay; once per submission."""
    if is_submission_token(submission) and _made_already(session, Sequence, submission):
        return RedirectResponse("/admin/mail/sequences?done=created", status_code=303)
    typed, steps, error = _steps(delay, unit, template)
    form = {"offer_id": typed_again(offer_id, MAX_ID), "name": typed_again(name, MAX_NAME), "steps": typed}
    body = None
    if not is_submission_token(submission):
        error = RESENT
    elif error is None:
        try:
            body = admin_followups.SequenceIn(offer_id=offer_id.strip(), name=name.strip(), steps=steps)
        except ValidationError as invalid:
            error = problem_of(invalid, LABELS)
            if error.startswith("Offer:"):
                error = "Offer: give the offer's id, like offer_1a2b3c (letters, digits, _ . : -, at most 64)."
    if error is None:
        problem = next(filter(None, (templates.follow_up_problem(session, s.template) for s in steps)), None)
        error = f"Email template: {problem}." if problem else None
    if error is not None or body is None:
        return _sequence_form(request, session, owner, form=form, rows=max(STEP_ROWS, len(typed)), error=error,
                              status_code=422, submission=submission)
    sequence = sequences.create_sequence(session, offer_id=body.offer_id, name=body.name, steps=[
        {"delay_hours": s.hours, "template": s.template} for s in sorted(body.steps, key=lambda s: s.hours)])
    return _made_once(session, Sequence, sequence, submission)


@pages.post("/sequences/{sequence_id}/delete", dependencies=[Depends(require_csrf)])
def delete_sequence(sequence_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Stops the sequence: its steps still due send nothing."""
    return _delete(request, session, Sequence, sequence_id, "sequence")


# --- rules -------------------------------------------------------------------------------------


@pages.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, session: SessionDep, staff: StaffDep, page: str = "1", done: str = ""):
    """The follow-up rules, newest first."""
    said = {"created": "The rule is saved: it applies to what customers do from now on.",
            "deleted": "The rule is deleted: what it had planned sends nothing."}.get(done)
    return _listed(request, session, staff, FollowUpRule, "backoffice/mail_rules.html", page, said)


def _rule_form(request: Request, session: Session, owner: StaffSession, *, form: dict | None = None,
               error: str | None = None, status_code: int = 200, submission: str = "") -> Response:
    form = form or {"trigger": "bought_without", "offer_id": "", "other_offer_id": "", "product_id": "", "days": "3",
                    "template": "", "link_offer_id": ""}
    return show(request, owner, ACTIVE, "backoffice/mail_rule_new.html", {
        "form": form, "triggers": TRIGGERS, "templates": templates.follow_up_names(session), "error": error,
        "submission": submission_of(submission)}, status_code=status_code)


@pages.get("/rules/new", response_class=HTMLResponse)
def new_rule_page(request: Request, session: SessionDep, owner: OwnerDep):
    return _rule_form(request, session, owner)


@pages.post("/rules/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def create_rule(request: Request, session: SessionDep, owner: OwnerDep, trigger: Annotated[str, Form()] = "",
                offer_id: Annotated[str, Form()] = "", other_offer_id: Annotated[str, Form()] = "",
                product_id: Annotated[str, Form()] = "", days: Annotated[str, Form()] = "0",
                template: Annotated[str, Form()] = "", link_offer_id: Annotated[str, Form()] = "",
                submission: Annotated[str, Form()] = ""):
    """A follow-up offer by what a customer does from now on; once per submission."""
    if is_submission_token(submission) and _made_already(session, FollowUpRule, submission):
        return RedirectResponse("/admin/mail/rules?done=created", status_code=303)
    typed = {"trigger": trigger, "offer_id": offer_id, "other_offer_id": other_offer_id, "product_id": product_id,
             "days": days, "template": template, "link_offer_id": link_offer_id}
    form = {key: typed_again(value, MAX_ID).strip() for key, value in typed.items()}

    def refused(message: str) -> Response:
        return _rule_form(request, session, owner, form=form, error=message, status_code=422, submission=submission)

    if not is_submission_token(submission):
        return refused(RESENT)
    if trigger not in TRIGGERS:
        return refused("When: choose what the customer did.")
    if not _ids_ok(*typed.values()):
        return refused("Offers and products are ids like offer_1a2b3c: letters, digits, _ . : -, at most 64.")
    days = days.strip() or "0"
    if not (days.isascii() and days.isdigit() and len(days) <= 3):
        return refused("Days: give a whole number of days, from 0 to 365.")
    needed = [key for key in NEEDED[trigger] if not form[key]]
    if needed:
        return refused(f"{LABELS[needed[0]]}: this kind of rule needs it.")
    if trigger in ("bought_without", "no_login") and int(days) < 1:
        return refused("Days: this kind of rule needs 1 or more.")
    if not form["template"] or not form["link_offer_id"]:
        return refused("Choose the email template it sends and give the offer it links to.")
    try:
        body = admin_followups.RuleIn(trigger=trigger, days=int(days), template=form["template"],  # type: ignore[arg-type]
                                      link_offer_id=form["link_offer_id"],
                                      **{key: form[key] or None for key in ("offer_id", "other_offer_id", "product_id")})
    except ValidationError as invalid:
        return refused(problem_of(invalid, LABELS))
    problem = templates.follow_up_problem(session, body.template)
    if problem is not None:
        return refused(f"Email template: {problem}.")
    return _made_once(session, FollowUpRule, rules.create_rule(session, **body.model_dump()), submission)


@pages.post("/rules/{rule_id}/delete", dependencies=[Depends(require_csrf)])
def delete_rule(rule_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    return _delete(request, session, FollowUpRule, rule_id, "rule")

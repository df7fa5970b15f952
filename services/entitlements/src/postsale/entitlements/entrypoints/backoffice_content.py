"""A hosted membership's sections and lessons in the back office: add, edit, move and remove them.

The pages call the admin API's content use cases (`delivery/membership.py`) and check what was typed
with the API's own models (`admin_delivery.NewLesson`, ...), so a lesson saved here obeys the same
rules. They live under `/admin/products/{id}/edit/content`: the API owns `/admin/products/{id}/content`.
The forms that add a section or a lesson carry a one-time token: posted twice, they add it once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from postsale.entitlements.adapters.tables import Lesson, Product, Section
from postsale.entitlements.delivery import membership
from postsale.entitlements.entrypoints.admin_delivery import LessonChange, NewLesson, NewSection, SectionChange
from postsale.entitlements.entrypoints.backoffice_forms import ACTIVE, is_id, product_or_404, render, whole_number
from postsale.runtime.backoffice import FormError, create_once, form_text, problem_of, submission_of, typed_again
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import StaffDep, StaffSession

pages = APIRouter(include_in_schema=False)
MAX_TITLE, MAX_BODY, MAX_URL = 200, 100_000, 2000
LABELS = {"title": "Title", "body": "Text", "video_url": "Video link", "audio_url": "Audio link",
          "drip_days": "Opens after (days)", "position": "Position", "section_id": "Section"}
DONE = {"section_added": "The section is added.", "section_saved": "The section is saved.",
        "section_removed": "The section and its lessons are removed.", "lesson_added": "The lesson is added.",
        "lesson_saved": "The lesson is saved.", "lesson_removed": "The lesson is removed."}
LessonForm = dict[str, str]


def _content_url(product_id: str, done: str) -> str:
    return f"/admin/products/{product_id}/edit/content?done={done}"


def _membership(session: Session, product_id: str) -> Product:
    """The hosted membership the address names; a 404 page (the app renders it) for anything else."""
    product = product_or_404(session, product_id)
    if product.delivery_type != "membership":
        raise HTTPException(status_code=404, detail=f"{product.name} is not a hosted membership: it has no sections "
                                                    "and lessons.")
    return product


def _checked(model: type[BaseModel], values: dict) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise FormError(problem_of(exc, LABELS)) from None


def _lesson_values(typed: LessonForm) -> dict:
    """A lesson form's fields as the API's models take them (an empty link or drip: none)."""
    return {"title": form_text(typed["title"], label="Title", max_length=MAX_TITLE, required=True),
            "body": form_text(typed["body"], label="Text", max_length=MAX_BODY),
            "video_url": form_text(typed["video_url"], label="Video link", max_length=MAX_URL) or None,
            "audio_url": form_text(typed["audio_url"], label="Audio link", max_length=MAX_URL) or None,
            "drip_days": whole_number(typed["drip_days"], label="Opens after (days)", low=0, high=3650)}


def _shown(typed: LessonForm) -> LessonForm:
    return {name: typed_again(value, MAX_BODY if name == "body" else MAX_URL) for name, value in typed.items()}


def content_page(request: Request, session: Session, staff: StaffSession, product: Product, *, done: str = "",
                 error: str | None = None, error_form: str = "", typed: dict | None = None,
                 status_code: int = 200) -> Response:
    """`error_form` names the form the error is about, which shows it with what was typed."""
    return render(request, staff, "product_content.html", ACTIVE, status_code=status_code, product=product,
                  content=membership.content(session, product.id), done=DONE.get(done), error=error,
                  error_form=error_form, typed=typed or {},
                  limits={"title": MAX_TITLE, "body": MAX_BODY, "url": MAX_URL})


@pages.get("/products/{product_id}/edit/content", response_class=HTMLResponse)
def content(product_id: str, request: Request, session: SessionDep, staff: StaffDep, done: str = ""):
    """The membership's sections in order, each with its lessons in order."""
    product = _membership(session, product_id)
    return content_page(request, session, staff, product, done=done)


@pages.post("/products/{product_id}/edit/content/sections", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def add_section(product_id: str, request: Request, session: SessionDep, staff: StaffDep,
                title: Annotated[str, Form()] = "", submission: Annotated[str, Form()] = ""):
    product = _membership(session, product_id)
    try:
        token = submission_of(submission)
        clean = _checked(NewSection, {"title": form_text(title, label="Title", max_length=MAX_TITLE,
                                                         required=True)})
    except FormError as exc:
        return content_page(request, session, staff, product, error=str(exc), error_form="new-section",
                            typed={"title": typed_again(title, MAX_TITLE)}, status_code=422)
    create_once(session, Section, token, lambda: membership.add_section(
        session, product.id, title=clean.title))  # type: ignore[attr-defined]
    return RedirectResponse(_content_url(product.id, "section_added"), status_code=303)


def _section(session: Session, product_id: str, section_id: str) -> Section | None:
    section = session.get(Section, section_id) if is_id(section_id) else None
    return section if section is not None and section.product_id == product_id else None


def _found_section(session: Session, product: Product, section_id: str) -> Section:
    section = _section(session, product.id, section_id)
    if section is None:
        raise HTTPException(status_code=404, detail=f"{product.name} has no such section (it may be removed "
                                                    "already).")
    return section


@pages.post("/products/{product_id}/edit/content/sections/{section_id}", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def save_section(product_id: str, section_id: str, request: Request, session: SessionDep, staff: StaffDep,
                 title: Annotated[str, Form()] = "", position: Annotated[str, Form()] = ""):
    """Renames the section or moves it (sections are shown by position)."""
    product = _membership(session, product_id)
    section = _found_section(session, product, section_id)
    try:
        changes = _checked(SectionChange, {
            "title": form_text(title, label="Title", max_length=MAX_TITLE, required=True),
            "position": whole_number(position, label="Position", low=0, high=100_000)})
    except FormError as exc:
        return content_page(request, session, staff, product, error=str(exc), error_form=f"section-{section.id}",
                            typed={"title": typed_again(title, MAX_TITLE), "position": typed_again(position, 12)},
                            status_code=422)
    membership.update_section(session, product.id, section.id,
                              **changes.model_dump(exclude_none=True))
    session.commit()
    return RedirectResponse(_content_url(product.id, "section_saved"), status_code=303)


@pages.post("/products/{product_id}/edit/content/sections/{section_id}/remove",
            dependencies=[Depends(require_csrf)])
def remove_section(product_id: str, section_id: str, request: Request, session: SessionDep,
                   staff: StaffDep) -> Response:
    """Removes the section and its lessons (asked for confirmation on the page)."""
    product = _membership(session, product_id)
    _found_section(session, product, section_id)
    membership.remove_section(session, product.id, section_id)
    session.commit()
    return RedirectResponse(_content_url(product.id, "section_removed"), status_code=303)


@pages.post("/products/{product_id}/edit/content/sections/{section_id}/lessons", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def add_lesson(product_id: str, section_id: str, request: Request, session: SessionDep, staff: StaffDep,
               title: Annotated[str, Form()] = "", body: Annotated[str, Form()] = "",
               video_url: Annotated[str, Form()] = "", audio_url: Annotated[str, Form()] = "",
               drip_days: Annotated[str, Form()] = "", submission: Annotated[str, Form()] = ""):
    """A new lesson, last in its section; it opens `drip_days` after a customer's access began."""
    product = _membership(session, product_id)
    section = _found_section(session, product, section_id)
    typed = {"title": title, "body": body, "video_url": video_url, "audio_url": audio_url, "drip_days": drip_days}
    try:
        token = submission_of(submission)
        lesson = _checked(NewLesson, _lesson_values(typed))
    except FormError as exc:
        return content_page(request, session, staff, product, error=str(exc), error_form=f"new-lesson-{section.id}",
                            typed=_shown(typed), status_code=422)
    create_once(session, Lesson, token, lambda: membership.add_lesson(
        session, product.id, section.id, **lesson.model_dump(exclude={"position"})))
    return RedirectResponse(_content_url(product.id, "lesson_added"), status_code=303)


def _found_lesson(session: Session, product: Product, lesson_id: str) -> Lesson:
    lesson = session.get(Lesson, lesson_id) if is_id(lesson_id) else None
    if lesson is None or lesson.product_id != product.id:
        raise HTTPException(status_code=404, detail=f"{product.name} has no such lesson (it may be removed "
                                                    "already).")
    return lesson


def _lesson_page(request: Request, session: Session, staff: StaffSession, product: Product, lesson: Lesson, *,
                 typed: dict | None = None, error: str | None = None, status_code: int = 200) -> Response:
    values = typed or {"title": lesson.title, "body": lesson.body, "video_url": lesson.video_url or "",
                       "audio_url": lesson.audio_url or "", "section_id": lesson.section_id,
                       "drip_days": "" if lesson.drip_days is None else str(lesson.drip_days),
                       "position": str(lesson.position)}
    return render(request, staff, "lesson.html", ACTIVE, status_code=status_code, product=product, lesson=lesson,
                  form=values, error=error, sections=[s for s, _ in membership.content(session, product.id)],
                  limits={"title": MAX_TITLE, "body": MAX_BODY, "url": MAX_URL})


@pages.get("/products/{product_id}/edit/content/lessons/{lesson_id}", response_class=HTMLResponse)
def lesson_page(product_id: str, lesson_id: str, request: Request, session: SessionDep, staff: StaffDep):
    product = _membership(session, product_id)
    lesson = _found_lesson(session, product, lesson_id)
    return _lesson_page(request, session, staff, product, lesson)


@pages.post("/products/{product_id}/edit/content/lessons/{lesson_id}", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def save_lesson(product_id: str, lesson_id: str, request: Request, session: SessionDep, staff: StaffDep,
                title: Annotated[str, Form()] = "", body: Annotated[str, Form()] = "",
                video_url: Annotated[str, Form()] = "", audio_url: Annotated[str, Form()] = "",
                drip_days: Annotated[str, Form()] = "", section_id: Annotated[str, Form()] = "",
                position: Annotated[str, Form()] = ""):
    """Changes the lesson; an emptied link or drip is taken away."""
    product = _membership(session, product_id)
    lesson = _found_lesson(session, product, lesson_id)
    typed = {"title": title, "body": body, "video_url": video_url, "audio_url": audio_url, "drip_days": drip_days,
             "section_id": section_id, "position": position}
    try:
        if _section(session, product.id, section_id) is None:
            raise FormError("Section: choose one of this product's sections.")
        changes = _checked(LessonChange, {**_lesson_values(typed), "section_id": section_id,
                                          "position": whole_number(position, label="Position", low=0, high=100_000)})
    except FormError as exc:
        return _lesson_page(request, session, staff, product, lesson, typed=_shown(typed), error=str(exc),
                            status_code=422)
    values = changes.model_dump()
    if values["position"] is None:
        del values["position"]
    membership.update_lesson(session, product.id, lesson.id, **values)
    session.commit()
    return RedirectResponse(_content_url(product.id, "lesson_saved"), status_code=303)


@pages.post("/products/{product_id}/edit/content/lessons/{lesson_id}/remove", dependencies=[Depends(require_csrf)])
def remove_lesson(product_id: str, lesson_id: str, request: Request, session: SessionDep,
                  staff: StaffDep) -> Response:
    product = _membership(session, product_id)
    _found_lesson(session, product, lesson_id)
    membership.remove_lesson(session, product.id, lesson_id)
    session.commit()
    return RedirectResponse(_content_url(product.id, "lesson_removed"), status_code=303)

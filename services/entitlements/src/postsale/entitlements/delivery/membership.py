"""`membership`: content hosted here (sections of lessons: text, a video or audio link), opened
from the library while access lasts; a lesson may drip, opening N days after access began.

Nothing needs doing when access begins or ends: the library and the lesson pages read the
current access on every request. The content itself is the seller's, managed by the use cases
below through the admin API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, select

from postsale.entitlements.adapters.tables import Delivery, Lesson, Product, Section
from postsale.entitlements.delivery.base import BaseStrategy, DeliveryContext, Result
from postsale.entitlements.domain.content import is_open, opens_at
from postsale.runtime.clock import utcnow


class MembershipStrategy(BaseStrategy):
    delivery_type = "membership"

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        return Result("done", "the library opens its content")

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        return Result("done", "the library no longer opens its content")


class NotAMembership(ValueError):
    pass


class UnknownContent(LookupError):
    pass


def _membership(session: Session, product_id: str) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise UnknownContent(f"unknown product {product_id}")
    if product.delivery_type != "membership":
        raise NotAMembership(f"product {product_id} is delivered as {product.delivery_type}, not as a membership")
    return product


def _section(session: Session, product_id: str, section_id: str) -> Section:
    section = session.get(Section, section_id)
    if section is None or section.product_id != product_id:
        raise UnknownContent(f"product {product_id} has no section {section_id}")
    return section


def _lesson(session: Session, product_id: str, lesson_id: str) -> Lesson:
    lesson = session.get(Lesson, lesson_id)
    if lesson is None or lesson.product_id != product_id:
        raise UnknownContent(f"product {product_id} has no lesson {lesson_id}")
    return lesson


def add_section(session: Session, product_id: str, *, title: str, position: int | None = None) -> Section:
    """A new section of a membership product, last unless `position` says otherwise."""
    _membership(session, product_id)
    if position is None:
        position = (session.exec(select(func.max(Section.position)).where(Section.product_id == product_id)).one()
                    or 0) + 1
    section = Section(id=f"sec_{uuid.uuid4().hex[:16]}", product_id=product_id, title=title, position=position)
    session.add(section)
    return section


def update_section(session: Session, product_id: str, section_id: str, **changes) -> Section:
    section = _section(session, product_id, section_id)
    for name, value in changes.items():
        setattr(section, name, value)
    session.add(section)
    return section


def remove_section(session: Session, product_id: str, section_id: str) -> None:
    """Removes the section and its lessons."""
    section = _section(session, product_id, section_id)
    session.execute(delete(Lesson).where(Lesson.section_id == section.id))  # type: ignore[arg-type]
    session.delete(section)


def add_lesson(session: Session, product_id: str, section_id: str, *, title: str, body: str = "",
               video_url: str | None = None, audio_url: str | None = None, drip_days: int | None = None,
               position: int | None = None) -> Lesson:
    """A new lesson in a section, last unless `position` says otherwise."""
    _membership(session, product_id)
    _section(session, product_id, section_id)
    if position is None:
        position = (session.exec(select(func.max(Lesson.position)).where(Lesson.section_id == section_id)).one()
                    or 0) + 1
    lesson = Lesson(id=f"les_{uuid.uuid4().hex[:16]}", section_id=section_id, product_id=product_id, title=title,
                    body=body, video_url=video_url, audio_url=audio_url, drip_days=drip_days, position=position)
    session.add(lesson)
    return lesson


def update_lesson(session: Session, product_id: str, lesson_id: str, **changes) -> Lesson:
    lesson = _lesson(session, product_id, lesson_id)
    if "section_id" in changes:
        _section(session, product_id, changes["section_id"])
    for name, value in changes.items():
        setattr(lesson, name, value)
    lesson.updated_at = utcnow()
    session.add(lesson)
    return lesson


def remove_lesson(session: Session, product_id: str, lesson_id: str) -> None:
    session.delete(_lesson(session, product_id, lesson_id))


def content(session: Session, product_id: str) -> list[tuple[Section, list[Lesson]]]:
    """The product's sections in order, each with its lessons in order."""
    sections = session.exec(select(Section).where(Section.product_id == product_id)
                            .order_by(Section.position, Section.created_at)).all()
    lessons = session.exec(select(Lesson).where(Lesson.product_id == product_id)
                           .order_by(Lesson.position, Lesson.created_at)).all()
    by_section: dict[str, list[Lesson]] = {s.id: [] for s in sections}
    for lesson in lessons:
        by_section.setdefault(lesson.section_id, []).append(lesson)
    return [(s, by_section[s.id]) for s in sections]


@dataclass(frozen=True)
class LessonView:
    lesson: Lesson
    opens_at: datetime
    open: bool


def customer_content(session: Session, product_id: str, access_since: datetime,
                     now: datetime) -> list[tuple[Section, list[LessonView]]]:
    """The content as a customer whose access began at `access_since` sees it: each lesson with
    when it opens for them and whether it is open now."""
    return [(section, [LessonView(lesson, opens_at(access_since, lesson.drip_days),
                                  is_open(access_since, lesson.drip_days, now)) for lesson in lessons])
            for section, lessons in content(session, product_id)]

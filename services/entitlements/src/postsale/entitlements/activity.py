"""What customers open, for the seller: `ContentOpened` when a customer opens the library, a lesson
or a file (at most one per customer, kind and product every few minutes, across replicas), and
`ProductCompleted` once per customer and product when every lesson of a membership has been opened.
Accounts keeps the latest of each kind and tells the rest of the store (`CustomerActivity`).

Each use case runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import func
from sqlmodel import Session, select

from postsale.contracts import ContentOpened, ProductCompleted
from postsale.entitlements.adapters.tables import (ContentPublication, Lesson, LessonOpening, Product,
                                                   ProductCompletion)
from postsale.entitlements.config import SERVICE
from postsale.runtime.activity import ActivityThrottle
from postsale.runtime.db import insert_once
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"
MAX_FILE_NAME = 255  # what an event carries of a file's name


def content_opened(session: Session, throttle: ActivityThrottle, *, customer_id: str,
                   kind: Literal["library_visit", "lesson", "download"], now: datetime,
                   product_id: str | None = None, lesson_id: str | None = None,
                   file_name: str | None = None) -> bool:
    """Queues `ContentOpened` unless one of this customer, kind and product went out lately; True
    when queued."""
    if not throttle.claim(session, ContentPublication, customer_id=customer_id, kind=kind, product_id=product_id,
                          now=now):
        return False
    publish_later(session, ContentOpened(customer_id=customer_id, kind=kind, product_id=product_id,
                                         lesson_id=lesson_id, file_name=file_name[:MAX_FILE_NAME] if file_name else None,
                                         opened_at=now), source=SOURCE)
    return True


def lesson_opened(session: Session, throttle: ActivityThrottle, *, customer_id: str, product: Product,
                  lesson: Lesson, now: datetime) -> None:
    """A customer opened a lesson: `ContentOpened` (throttled), and the opening kept for completion.
    The caller commits, then calls `complete_product` in a new transaction."""
    content_opened(session, throttle, customer_id=customer_id, kind="lesson", product_id=product.id,
                   lesson_id=lesson.id, now=now)
    insert_once(session, LessonOpening(customer_id=customer_id, lesson_id=lesson.id, product_id=product.id,
                                       opened_at=now))


def complete_product(session: Session, *, customer_id: str, email: str, product: Product, now: datetime) -> bool:
    """`ProductCompleted` when the customer has opened every lesson of the product, once per customer
    and product (the completion's key refuses a second one); True when it was queued now.

    Called after the opening committed, so of two lessons opened at once in two requests, the one
    that commits last sees both openings; a completion missed by a crash in between is found at the
    next lesson the customer opens."""
    if session.get(ProductCompletion, (customer_id, product.id)) is not None:
        return False
    lessons = session.exec(select(func.count()).select_from(Lesson).where(Lesson.product_id == product.id)).one()
    opened = session.exec(select(func.count()).select_from(Lesson).join(
        LessonOpening, (LessonOpening.lesson_id == Lesson.id) & (LessonOpening.customer_id == customer_id)  # type: ignore[arg-type]
    ).where(Lesson.product_id == product.id)).one()
    if lessons == 0 or opened < lessons:
        return False
    if not insert_once(session, ProductCompletion(customer_id=customer_id, product_id=product.id, lessons=lessons,
                                                  completed_at=now)):
        return False  # another request completed it a moment ago
    publish_later(session, ProductCompleted(customer_id=customer_id, email=email, product_id=product.id,
                                            product_name=product.name, lessons=lessons, completed_at=now),
                  source=SOURCE)
    return True

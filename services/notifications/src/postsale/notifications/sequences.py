"""Follow-up sequences: per offer, emails at delays after its purchase. Each step is a row with
its due time on the follow-ups' scheduler, planned when the purchase arrives; when it falls due
it goes out unless the customer's access to the offer's products has ended (a refund, the end of
billing) or the sequence was deleted. Marketing emails: an unsubscribed address gets none.
Each use case runs inside the caller's transaction and never commits."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlmodel import Session, select

from postsale.contracts import PurchaseCompleted
from postsale.notifications import access
from postsale.notifications.adapters.tables import FollowUp, PurchaseRecord, Sequence
from postsale.notifications.domain import followups as rules
from postsale.notifications.emails import queue_email
from postsale.notifications.rendering import TemplateProblem
from postsale.runtime.db import remembered
from postsale.runtime.scheduler import wake
from postsale.runtime.settings import PublicUrls, from_environment

log = logging.getLogger(__name__)


def create_sequence(session: Session, *, offer_id: str, name: str, steps: list[dict]) -> Sequence:
    """`steps`: each `{"delay_hours": int, "template": str}`, checked by the caller."""
    sequence = Sequence(id=f"seq_{uuid.uuid4().hex[:16]}", offer_id=offer_id, name=name, steps=steps)
    session.add(sequence)
    return sequence


def plan_sequences(session: Session, event: PurchaseCompleted) -> None:
    """Part of `PurchaseCompleted`: each step of each sequence of the offer becomes a row due at
    its delay after the purchase. Keyed by sequence, purchase and step: planning twice adds nothing."""
    of_offer = remembered(session, Sequence, event.offer_id, lambda: session.exec(
        select(Sequence).where(Sequence.offer_id == event.offer_id)).all())
    for sequence in of_offer:
        for number, step in enumerate(sequence.steps, start=1):
            key = f"follow-up:{sequence.id}:{event.purchase_id}:{number}"
            if session.get(FollowUp, key) is None:
                session.add(FollowUp(id=key, due_at=rules.step_due(event.completed_at, step["delay_hours"]),
                                     kind="sequence_step", customer_id=event.customer_id, to=event.email,
                                     purchase_id=event.purchase_id, offer_id=event.offer_id,
                                     sequence_id=sequence.id, step=number, moment=event.completed_at,
                                     planned_at=event.completed_at))
                wake(session, access.FOLLOW_UPS)


def send_step(session: Session, row: FollowUp, now: datetime) -> None:
    """Run at the step's due time: queues its email (keyed by the row) if the sequence still applies."""
    sequence = session.get(Sequence, row.sequence_id or "")
    purchase = session.get(PurchaseRecord, row.purchase_id or "")
    has_access = access.has_access(session, row.customer_id, purchase.product_ids if purchase else [], now)
    why_not = rules.why_not_send_step(sequence_exists=sequence is not None, access=has_access)
    if why_not or sequence is None or row.step is None or row.step > len(sequence.steps):
        log.info("follow-up %s not sent: %s", row.id, why_not or "the step was removed")
        return
    queue_follow_up(session, row, sequence.steps[row.step - 1]["template"], offer_id=row.offer_id or "",
                    step=row.step)


def queue_follow_up(session: Session, row: FollowUp, template: str, *, offer_id: str, step: int | None) -> None:
    """Queues a follow-up's email; one whose template cannot be rendered (the seller's own, removed or
    broken, with no default to fall back on) is logged as not sent, never retried: retrying cannot help."""
    try:
        queue_email(session, key=row.id, template=template, to=row.to, customer_id=row.customer_id, marketing=True,
                    **follow_up_context(session, row, offer_id=offer_id, step=step))
    except (LookupError, TemplateProblem) as problem:
        log.error("follow-up %s not sent: its template %s cannot be rendered: %s", row.id, template, problem)


def follow_up_context(session: Session, row: FollowUp, *, offer_id: str, step: int | None) -> dict:
    """The variables of a follow-up email (`catalogue.FOLLOW_UP_VARIABLES`)."""
    purchase = session.get(PurchaseRecord, row.purchase_id or "")
    urls = from_environment(PublicUrls)
    return {"email": row.to, "offer_name": purchase.offer_name if purchase else "",
            "products": [{"name": p["name"]} for p in purchase.products] if purchase else [],
            "offer_url": f"{urls.checkout_url}/offers/{offer_id}", "library_url": urls.library_url, "step": step}

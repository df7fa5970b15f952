"""The seller's email templates: edit, preview, test send, back to the default. Each use case
runs inside the caller's transaction and never commits."""

from __future__ import annotations

import uuid

from sqlmodel import Session, select

from postsale.contracts import ThemeChanged
from postsale.notifications import catalogue, rendering
from postsale.notifications.adapters.tables import FollowUpRule, Sequence, StoreTheme, TemplateOverride
from postsale.notifications.emails import queue_rendered
from postsale.notifications.rendering import Parts, TemplateProblem
from postsale.runtime.clock import as_utc, utcnow

MAX_SUBJECT = 300
MAX_BODY = 100_000


def names(session: Session) -> list[str]:
    """Every email Postsale sends, then the seller's own templates."""
    built_in = catalogue.built_in_names()
    own = [name for name in session.exec(select(TemplateOverride.name).order_by(TemplateOverride.name))
           if name not in built_in]
    return built_in + own


def follow_up_problem(session: Session, name: str) -> str | None:
    """Why the template cannot be a follow-up's email, or None when it can: it must exist and render
    with a follow-up's variables alone (`catalogue.FOLLOW_UP_VARIABLES`), as it will be sent. Postsale's
    own emails read what their event brings (a checkout, a purchase), which a follow-up has not: saved
    with one, every step would be dropped when due."""
    parts = rendering.current_parts(session, name)
    if parts is None:
        return f"there is no email template {name}: create it first"
    # A follow-up is a marketing email: it has the unsubscribe links too.
    values = {**_example_links(marketing=True),
              **{key: variable.example for key, variable in catalogue.FOLLOW_UP_VARIABLES.items()}}
    try:
        rendering.render_parts(parts, values, rendering.store_theme(session))
    except TemplateProblem as problem:
        return (f"the email template {name} cannot be a follow-up ({problem}): a follow-up's email has only "
                f"{', '.join(catalogue.FOLLOW_UP_VARIABLES)}; write one of your own under Templates")
    return None


def follow_up_names(session: Session) -> list[str]:
    """The templates a follow-up can send (`follow_up_problem`), for the follow-up forms."""
    return [name for name in names(session) if follow_up_problem(session, name) is None]


def exists(session: Session, name: str) -> bool:
    return rendering.current_parts(session, name) is not None


def preview(session: Session, name: str, parts: Parts | None = None, values: dict | None = None) -> tuple[str, str, str]:
    """The email as it would go out, with example values (`values` replace some); a draft's `parts`
    instead of the saved template. Raises TemplateProblem, LookupError for an unknown template."""
    parts = parts or rendering.current_parts(session, name)
    if parts is None:
        raise LookupError(f"no email template {name!r}")
    context = {**_example_links(catalogue.spec_of(name).marketing), **catalogue.example_context(name), **(values or {})}
    return rendering.render_parts(parts, context, rendering.store_theme(session))


def _example_links(marketing: bool) -> dict:
    return {"unsubscribe_url": f"{catalogue.SHOP}/unsubscribe/example" if marketing else None,
            "preferences_url": f"{catalogue.SHOP}/preferences/example" if marketing else None}


def save(session: Session, name: str, parts: Parts) -> TemplateOverride:
    """Stores the seller's version, once it compiles, reads only variables the email offers and
    renders with the example values. Raises TemplateProblem saying what is wrong."""
    if len(parts.subject) > MAX_SUBJECT or max(len(parts.text), len(parts.html)) > MAX_BODY:
        raise TemplateProblem(f"a subject has at most {MAX_SUBJECT} characters, a body at most {MAX_BODY}")
    offered = set(catalogue.spec_of(name).variables) | set(catalogue.COMMON)
    unknown = sorted(rendering.variables_of(parts) - offered)
    if unknown:
        raise TemplateProblem(f"this email offers no variable {', '.join(unknown)}; it offers "
                              f"{', '.join(sorted(offered))}")
    preview(session, name, parts)
    row = session.get(TemplateOverride, name) or TemplateOverride(name=name, subject="", text_body="", html_body="")
    row.subject, row.text_body, row.html_body, row.updated_at = parts.subject, parts.text, parts.html, utcnow()
    session.add(row)
    return row


class TemplateInUse(ValueError):
    """A seller's own template that a follow-up still sends cannot be deleted."""


def reset(session: Session, name: str) -> bool:
    """Back to Postsale's default (a seller's own template is deleted). False when nothing was edited.
    Raises TemplateInUse for a template of the seller's own (no default) that a sequence or rule sends."""
    row = session.get(TemplateOverride, name)
    if row is None:
        return False
    if rendering.default_parts(name) is None:
        users = [f"sequence {s.id}" for s in session.exec(select(Sequence)).all()
                 if any(step["template"] == name for step in s.steps)]
        users += [f"rule {r.id}" for r in session.exec(select(FollowUpRule).where(FollowUpRule.template == name)).all()]
        if users:
            raise TemplateInUse(f"{', '.join(users)} still send {name}: change or delete them first")
    session.delete(row)
    return True


def send_test(session: Session, name: str, to: str) -> str:
    """Queues the email to `to` with the example values, as the seller's check; returns its key."""
    subject, text_body, html_body = preview(session, name)
    key = f"test-send:{name}:{uuid.uuid4().hex[:12]}"
    queue_rendered(session, key=key, template=name, to=to, subject=f"[Test] {subject}", text_body=text_body,
                   html_body=html_body)
    return key


def follow_theme(session: Session, event: ThemeChanged, _event_id: str) -> None:
    """Started by `ThemeChanged`: every email's HTML takes the seller's newest theme from now on."""
    row = session.get(StoreTheme, "store", with_for_update=True)
    if row is not None and as_utc(row.changed_at) > event.changed_at:
        return
    row = row or StoreTheme(id="store", changed_at=event.changed_at)
    row.settings, row.changed_at = dict(event.settings), event.changed_at
    session.add(row)

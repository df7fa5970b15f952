"""The back office's emails, served by notifications (whose data they are): the landing page, the
template editor (variables, preview, test send, back to the default), the email settings, and the
emails sent with their delivery. Any staff member may read them; only the owner changes them
(OwnerDep): a template's HTML decides where its links go, the login, reset and setup links
included, and the seller's addresses decide who hears of each sale, so support only reads.

They sit under `/admin/mail` beside the JSON admin API (bearer token, `/admin/templates`,
`/admin/emails`, ...), on paths it does not use. Each change goes through the API's use cases
(`templates`, `admin_templates`), so a page and the API accept and refuse the same things.

A preview is the seller's own HTML: it is shown in a sandboxed frame (`srcdoc`, no scripts, an
origin of its own) or on a page served with a `sandbox` policy, never as a page of this origin,
since the seller's HTML could otherwise act as the staff member who previews it.

A notice after a change names only what the database holds (the test email's address), never
text from the address, so a link cannot make the page say something that did not happen.
"""

from __future__ import annotations

import traceback
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.notifications import catalogue, rendering, templates
from postsale.notifications.adapters.tables import Email, EmailSettings, TemplateOverride
from postsale.notifications.emails import queue_rendered
from postsale.notifications.entrypoints import admin_templates
from postsale.notifications.entrypoints.backoffice_forms import RESENT, problem_of, show, split_list
from postsale.notifications.entrypoints.pages import templates as page_templates
from postsale.notifications.rendering import Parts, TemplateProblem
from postsale.runtime.backoffice import (FormError, form_text, is_submission_token, not_found, page_number,
                                         page_of_query, submission_token, typed_again)
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffDep, StaffSession

pages = APIRouter(prefix="/admin/mail", include_in_schema=False)
ACTIVE = "Emails"
LABELS = {"subject": "Subject", "html": "HTML part", "text": "Text part", "to": "Send to", "name": "Name",
          "seller_addresses": "Seller's addresses"}
STATUSES = {"queued": "queued", "sent": "sent (accepted by the relay)", "failed": "failed",
            "suppressed": "suppressed (not sent: the address unsubscribed or was refused)"}
MAX_KEY = 500
TEST_KEY = "test-send:{name}:{submission}"
RESERVED = {"new"}  # a path of its own under /admin/mail/templates
STARTER = Parts(subject="How is {{ offer_name }} going?",
                text="Hi,\n\nA few days in with {{ offer_name }}: here is what to try next.\n{{ library_url }}\n",
                html='<h1 style="{{ style.heading }}">How is {{ offer_name }} going?</h1>\n'
                     '<p>A few days in: here is what to try next.</p>\n'
                     '<p><a href="{{ library_url }}" style="{{ style.button }}">Open your library</a></p>')
SANDBOXED = {"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
                                        "img-src https: data:; font-src https: data:"}


@pages.get("", response_class=HTMLResponse)
def mail_page(request: Request, staff: StaffDep):
    """Where each part of the emails is."""
    return show(request, staff, ACTIVE, "backoffice/mail.html", {})


# --- templates ---------------------------------------------------------------------------------


def template_url(name: str, **query: str) -> str:
    return f"/admin/mail/templates/{quote(name)}" + (f"?{urlencode(query)}" if query else "")


def _line_of(problem: TemplateProblem) -> int | None:
    """The line of the seller's template where Jinja2 stopped."""
    cause = problem.__cause__
    if cause is None:
        return None
    if getattr(cause, "lineno", None):
        return cause.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(cause.__traceback__)
             if frame.filename in ("<template>", "<unknown>")]
    return lines[-1] if lines else None


def located(session: Session, name: str, draft: Parts, problem: TemplateProblem) -> str:
    """The problem, with the part and line it is in when one of them alone fails."""
    for label, single in (("The subject", Parts(draft.subject, "", "")), ("The text part", Parts("", draft.text, "")),
                          ("The HTML part", Parts("", "", draft.html))):
        try:
            templates.preview(session, name, single)
        except TemplateProblem as found:
            line = _line_of(found) or _line_of(problem)
            return f"{label}{f', line {line}' if line else ''}: {problem}"
    return f"The template does not work: {problem}"


def _variables(name: str | None) -> list[tuple[str, str]]:
    offered = catalogue.spec_of(name).variables if name else catalogue.FOLLOW_UP_VARIABLES
    return [(key, v.description) for key, v in offered.items()] + list(catalogue.COMMON.items())


def _editor(request: Request, session: Session, staff: StaffSession, name: str | None, *,
            form: dict | None = None, draft_preview: tuple | None = None, error: str | None = None,
            status_code: int = 200, done: str | None = None, to: str = "") -> Response:
    """The editor of a template (`name`), or of a new one of the seller's own (`name` None); to
    support, the saved template read-only, with its preview and no form."""
    context: dict = {"new": name is None, "name": name or "", "error": error, "done": done, "to": to,
                     "submission": submission_token(),
                     "variables": _variables(name), "draft": draft_preview is not None,
                     "limits": {"subject": templates.MAX_SUBJECT, "body": templates.MAX_BODY}}
    if name is not None:
        spec, saved = catalogue.spec_of(name), rendering.current_parts(session, name)
        context.update(title=spec.title, audience=spec.audience, marketing=spec.marketing,
                       edited=session.get(TemplateOverride, name) is not None,
                       own=rendering.default_parts(name) is None, url=template_url(name))
        form = form or {"subject": saved.subject, "html": saved.html, "text": saved.text}
    else:
        context.update(title="A template of your own", audience="customer", marketing=True, edited=False, own=True,
                       url="/admin/mail/templates/new")
        form = form or {"name": "", "subject": STARTER.subject, "html": STARTER.html, "text": STARTER.text}
    preview, preview_error = draft_preview, None
    if preview is None and name is not None:
        try:
            preview = templates.preview(session, name)
        except TemplateProblem as problem:
            preview_error = str(problem)
    context.update(form=form, preview=dict(zip(("subject", "text", "html"), preview)) if preview else None,
                   preview_error=preview_error)
    return show(request, staff, ACTIVE, "backoffice/mail_template.html", context, status_code=status_code)


def _known(session: Session, name: str) -> bool:
    return bool(catalogue.NAME.match(name)) and templates.exists(session, name)


def _no_template(request: Request, name: str) -> Response:
    return not_found(request, page_templates,
                     f"There is no email template {name[:64]}. Pick one from the list of templates.")


@pages.get("/templates", response_class=HTMLResponse)
def templates_page(request: Request, session: SessionDep, staff: StaffDep, done: str = ""):
    """Every email Postsale sends, then the seller's own templates (for follow-ups)."""
    rows = [{"name": n, "spec": catalogue.spec_of(n), "edited": session.get(TemplateOverride, n) is not None,
             "own": rendering.default_parts(n) is None} for n in templates.names(session)]
    return show(request, staff, ACTIVE, "backoffice/mail_templates.html", {"rows": rows, "deleted": done == "deleted"})


@pages.get("/templates/new", response_class=HTMLResponse)
def new_template_page(request: Request, session: SessionDep, owner: OwnerDep):
    return _editor(request, session, owner, None)


def _made_already(session: Session, name: str, draft: Parts) -> bool:
    """The seller's own template `name` holds this draft: the form that made it was sent again."""
    return rendering.default_parts(name) is None and rendering.current_parts(session, name) == draft


def _save_or_preview(request: Request, session: Session, staff: StaffSession, name: str, *, new: bool,
                     form: dict, action: str) -> Response:
    """Previews the draft (changing nothing), or saves it once it renders; a draft that does not is
    shown again with the part and line at fault, and nothing is saved."""
    shown = {key: typed_again(value, templates.MAX_BODY) for key, value in form.items()}
    editor_name = None if new else name

    def refused(message: str, status_code: int = 422) -> Response:
        return _editor(request, session, staff, editor_name, form=shown, error=message, status_code=status_code)

    try:
        body = admin_templates.TemplateIn(subject=form["subject"], html=form["html"], text=form["text"])
    except ValidationError as invalid:
        return refused(problem_of(invalid, LABELS))
    draft = Parts(body.subject, body.text, body.html)
    if action == "preview":
        try:
            rendered = templates.preview(session, name, draft)
        except TemplateProblem as problem:
            return refused(located(session, name, draft, problem))
        return _editor(request, session, staff, editor_name, form=shown, draft_preview=rendered)
    try:
        templates.save(session, name, draft)
    except TemplateProblem as problem:
        session.rollback()
        return refused(located(session, name, draft, problem))
    try:
        session.commit()
    except IntegrityError:  # the same name created meanwhile, by this form sent twice or by someone else
        session.rollback()
        if not _made_already(session, name, draft):
            return refused(f"Name: there is a template {name} already. Open it from the list to edit it.", 409)
    return RedirectResponse(template_url(name, done="created" if new else "saved"), status_code=303)


@pages.post("/templates/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def create_template(request: Request, session: SessionDep, owner: OwnerDep, name: Annotated[str, Form()] = "",
                    subject: Annotated[str, Form()] = "", html: Annotated[str, Form()] = "",
                    text: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "save"):
    """A template of the seller's own, for follow-up sequences and rules. The name makes it once:
    the same form sent again finds it made and says so, as the first time did."""
    form = {"name": name, "subject": subject, "html": html, "text": text}
    name = name.strip()
    problem = None
    if not catalogue.NAME.match(name) or name in RESERVED:
        problem = ("Name: use 1 to 64 lower-case letters, digits, - or _, starting with a letter or digit "
                   "(like week-one).")
    elif templates.exists(session, name):
        if action == "save" and _made_already(session, name, Parts(subject, text, html)):
            return RedirectResponse(template_url(name, done="created"), status_code=303)
        problem = f"Name: there is a template {name} already. Open it from the list to edit it."
    if problem:
        return _editor(request, session, owner, None, error=problem, status_code=409 if "already" in problem else 422,
                       form={k: typed_again(v, templates.MAX_BODY) for k, v in form.items()})
    return _save_or_preview(request, session, owner, name, new=True, form=form, action=action)


def _test_email(session: Session, name: str, key: str) -> Email | None:
    """The test email of this template the address names, if there is one."""
    if not key.startswith(TEST_KEY.format(name=name, submission="")) or len(key) > MAX_KEY:
        return None
    return session.get(Email, key)


@pages.get("/templates/{name}", response_class=HTMLResponse)
def template_page(name: str, request: Request, session: SessionDep, staff: StaffDep, done: str = "",
                  email: str = ""):
    """The editor: subject, HTML and text parts, the variables the email offers, its preview."""
    if not _known(session, name):
        return _no_template(request, name)
    said = {"saved": "Saved. The next email of this kind uses your version.",
            "created": "Your template is saved. Send it from a follow-up sequence or rule.",
            "reset": "Back to Postsale's default: your changes are gone."}.get(done)
    test = _test_email(session, name, email) if done == "test-sent" else None
    if test is not None:
        said = f"A test email is queued for {test.to}, its subject marked [Test]."
    return _editor(request, session, staff, name, done=said, to=test.to if test else "")


@pages.post("/templates/{name}", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def save_template(name: str, request: Request, session: SessionDep, owner: OwnerDep,
                  subject: Annotated[str, Form()] = "", html: Annotated[str, Form()] = "",
                  text: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "save"):
    """`action=preview`: the draft rendered with the example values, nothing saved; `save`: saved."""
    if not _known(session, name):
        return _no_template(request, name)
    return _save_or_preview(request, session, owner, name, new=False, action=action,
                            form={"subject": subject, "html": html, "text": text})


@pages.get("/templates/{name}/preview", response_class=HTMLResponse)
def preview_page(name: str, request: Request, session: SessionDep, staff: StaffDep):
    """The saved template as its email's HTML, with the example values, on a page of its own
    origin (the `sandbox` policy): what the seller wrote never runs as the back office."""
    if not _known(session, name):
        return _no_template(request, name)
    try:
        _subject, _text, html = templates.preview(session, name)
    except TemplateProblem as problem:
        return show(request, staff, ACTIVE, "backoffice/problem.html", {
            "title": "This template does not render", "message": str(problem)}, status_code=422)
    return HTMLResponse(html, headers=SANDBOXED)


@pages.post("/templates/{name}/test-send", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def test_send(name: str, request: Request, session: SessionDep, owner: OwnerDep, to: Annotated[str, Form()] = "",
              submission: Annotated[str, Form()] = ""):
    """The saved template with the example values, to an address of the seller's; subject marked
    [Test]. As `templates.send_test`, but keyed by the form's submission (the email log's key is
    unique): the form sent twice queues one email."""
    if not _known(session, name):
        return _no_template(request, name)
    if not is_submission_token(submission):
        return _editor(request, session, owner, name, error=RESENT, to=typed_again(to, 254), status_code=422)
    key = TEST_KEY.format(name=name, submission=submission)
    if session.get(Email, key) is None:
        try:
            address = admin_templates.TestSendIn(to=to.strip()).to
        except ValidationError as invalid:
            return _editor(request, session, owner, name, error=problem_of(invalid, LABELS), to=typed_again(to, 254),
                           status_code=422)
        try:
            subject, text_body, html_body = templates.preview(session, name)
        except TemplateProblem as problem:
            return _editor(request, session, owner, name, error=f"Nothing was sent: {problem}", to=address,
                           status_code=422)
        queue_rendered(session, key=key, template=name, to=address, subject=f"[Test] {subject}", text_body=text_body,
                       html_body=html_body)
        try:
            session.commit()
        except IntegrityError:  # the same submission, queued meanwhile
            session.rollback()
    return RedirectResponse(template_url(name, done="test-sent", email=key), status_code=303)


@pages.post("/templates/{name}/reset", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def reset_template(name: str, request: Request, session: SessionDep, owner: OwnerDep):
    """Back to Postsale's default; a template of the seller's own is deleted."""
    if not _known(session, name):
        return _no_template(request, name)
    own = rendering.default_parts(name) is None
    try:
        reset = templates.reset(session, name)
    except templates.TemplateInUse as in_use:
        return _editor(request, session, owner, name, error=f"Not deleted: {in_use}.", status_code=409)
    session.commit()
    if own:
        return RedirectResponse("/admin/mail/templates?done=deleted", status_code=303)
    return RedirectResponse(template_url(name, done="reset") if reset else template_url(name), status_code=303)


# --- email settings ----------------------------------------------------------------------------


def _settings_page(request: Request, session: Session, staff: StaffSession, *, form: dict | None = None,
                   error: str | None = None, done: bool = False, status_code: int = 200) -> Response:
    row = session.get(EmailSettings, "store")
    current = admin_templates.get_email_settings(session)
    form = form or {"seller_addresses": "\n".join(current.seller_addresses), "notify_each_sale": current.notify_each_sale}
    return show(request, staff, ACTIVE, "backoffice/mail_settings.html", {
        "form": form, "error": error, "done": done, "current": current,
        "from_environment": row is None or not row.seller_addresses}, status_code=status_code)


@pages.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, session: SessionDep, staff: StaffDep, done: str = ""):
    """Who hears of each sale, failed payments and failed third-party calls."""
    return _settings_page(request, session, staff, done=done == "saved")


@pages.post("/settings", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def save_settings(request: Request, session: SessionDep, owner: OwnerDep,
                  seller_addresses: Annotated[str, Form()] = "", notify_each_sale: Annotated[str, Form()] = ""):
    """Who hears of each sale is the owner's call: support only reads it."""
    form = {"seller_addresses": typed_again(seller_addresses, 5000), "notify_each_sale": notify_each_sale == "yes"}
    try:
        typed = form_text(seller_addresses, label="Seller's addresses", max_length=5000)
        body = admin_templates.EmailSettingsIO(seller_addresses=split_list(typed),
                                               notify_each_sale=notify_each_sale == "yes")
    except FormError as refused:
        return _settings_page(request, session, owner, form=form, error=str(refused), status_code=422)
    except ValidationError as invalid:
        return _settings_page(request, session, owner, form=form, error=problem_of(invalid, LABELS), status_code=422)
    admin_templates.put_email_settings(body, session)  # commits
    return RedirectResponse("/admin/mail/settings?done=saved", status_code=303)


# --- emails sent -------------------------------------------------------------------------------


def email_url(key: str) -> str:
    return f"/admin/mail/sent/{quote(key, safe='')}"


@pages.get("/sent", response_class=HTMLResponse)
def sent_page(request: Request, session: SessionDep, staff: StaffDep, to: str = "", status: str = "", page: str = "1"):
    """The email log, newest first: to whom, whether the relay accepted it, how often it was tried.
    A customer's profile links here with `?to=<their email>`."""
    to = "" if "\x00" in to else to[:254].strip()
    status = status if status in STATUSES else ""
    number = page_number(page)
    query = select(Email.key, Email.template, Email.to, Email.subject, Email.status, Email.attempts,
                   Email.last_error, Email.created_at, Email.sent_at)
    if to:
        query = query.where(Email.to.in_({to, to.lower()}))  # type: ignore[attr-defined]
    if status:
        query = query.where(Email.status == status)
    rows, more = page_of_query(session, query.order_by(Email.created_at.desc(), Email.key.desc()), number)  # type: ignore[attr-defined]

    def page_url(n: int) -> str:
        return "/admin/mail/sent?" + urlencode({**({"to": to} if to else {}), **({"status": status} if status else {}),
                                                "page": n})

    return show(request, staff, ACTIVE, "backoffice/mail_sent.html", {
        "emails": [{**row._asdict(), "url": email_url(row.key)} for row in rows], "to": to, "status": status,
        "statuses": STATUSES, "page": number, "previous_url": page_url(number - 1) if number > 1 else None,
        "next_url": page_url(number + 1) if more else None})


@pages.get("/sent/{key:path}", response_class=HTMLResponse)
def email_page(key: str, request: Request, session: SessionDep, staff: StaffDep):
    """One email as it was sent: its delivery, and the message itself."""
    email = session.get(Email, key) if len(key) <= MAX_KEY and "\x00" not in key else None
    if email is None:
        return not_found(request, page_templates,
                         "This email is not in the log. Search the emails sent by recipient instead.")
    return show(request, staff, ACTIVE, "backoffice/mail_message.html", {"email": email, "statuses": STATUSES})

"""The back office's webhooks, served by notifications (whose data they are): the seller's endpoints,
each one's deliveries with their attempts, replays of dead letters. Owner only, like the JSON admin
API's bearer token: an endpoint receives every customer's events, so it is the owner's call where
they go, and who holds the signing secret.

The signing secret is shown once, after the form that made it (adding the endpoint, rotating its
secret): the form's answer redirects to `/admin/webhooks/<id>/secret`, which shows the secret the
first time it is opened within a few minutes, and clears the endpoint's "to show" mark as it does:
a reload, or coming back later, shows nothing and changes nothing. Each of those forms carries a
submission token, stored on the endpoint (unique for the one that added it): sent twice, the form
adds one endpoint, or rotates the secret once. Pages sit under `/admin/webhooks`, beside the admin API's
`/admin/webhook-endpoints`, and change things through the same use cases (`webhooks.endpoints`,
`webhooks.deliveries`) after the same checks (`webhooks.api`'s models, `webhooks.targets`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.notifications.entrypoints.backoffice_forms import RESENT, problem_of, show, split_list, submission_of
from postsale.notifications.entrypoints.pages import templates as page_templates
from postsale.notifications.webhooks import api as webhooks_api
from postsale.notifications.webhooks import deliveries, domain, endpoints, targets
from postsale.notifications.webhooks.tables import WebhookDelivery, WebhookEndpoint
from postsale.runtime.backoffice import (PER_PAGE, is_submission_token, not_found, page_number, page_of_query,
                                         submission_token, typed_again)
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffSession

pages = APIRouter(prefix="/admin/webhooks", include_in_schema=False)
ACTIVE = "Webhooks"
STATUSES = {"waiting": "waiting (an earlier event of the same customer goes first)", "pending": "being sent",
            "delivered": "delivered", "failed": "failed (a dead letter: replay it)"}
LABELS = {"url": "URL", "event_types": "Events", "description": "Description", "alert_emails": "Alert emails"}
MAX_ID = 64
PAYLOAD_SHOWN = 20_000
SECRET_SHOWN_FOR = timedelta(minutes=10)  # the secret page is opened at once, by the form's redirect
NO_STORE = {"Cache-Control": "no-store"}
NOBODY_TOLD = ("Alert emails: nobody would be told if this endpoint were disabled. Give an alert email, or set the "
               "seller's addresses under Emails, Email settings.")


def _choices() -> list[dict]:
    """The event types an endpoint may take, each with the first sentence of what it means."""
    return [{"type": name, "about": " ".join((event.__doc__ or "").split()).split(". ")[0].rstrip(".")}
            for name, event in domain.EVENT_TYPES.items()]


def _endpoint(session: Session, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint | None:
    if len(endpoint_id) > MAX_ID or "\x00" in endpoint_id:
        return None
    return session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)


def _no_endpoint(request: Request, endpoint_id: str) -> Response:
    return not_found(request, page_templates, f"There is no webhook endpoint {endpoint_id[:MAX_ID]}: it may have "
                                              "been deleted. Pick one from the list of endpoints.")


def endpoint_url(endpoint_id: str, **query) -> str:
    return f"/admin/webhooks/{endpoint_id}" + (f"?{urlencode(query)}" if query else "")


@pages.get("", response_class=HTMLResponse)
def endpoints_page(request: Request, session: SessionDep, owner: OwnerDep, page: str = "1", done: str = ""):
    """Where the store's events go."""
    number = page_number(page)
    found, more = page_of_query(session, select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id),
                        number)
    return show(request, owner, ACTIVE, "backoffice/webhooks.html", {
        "endpoints": found, "deleted": done == "deleted", "page": number,
        "previous_url": f"/admin/webhooks?page={number - 1}" if number > 1 else None,
        "next_url": f"/admin/webhooks?page={number + 1}" if more else None})


# --- the endpoint form ---------------------------------------------------------------------------


def _form(request: Request, owner: StaffSession, *, endpoint: WebhookEndpoint | None = None,
          form: dict | None = None, error: str | None = None, status_code: int = 200,
          submission: str = "") -> Response:
    if form is None:
        form = {"url": endpoint.url, "event_types": list(endpoint.event_types), "description": endpoint.description,
                "alert_emails": "\n".join(endpoint.alert_emails)} if endpoint else \
            {"url": "", "event_types": [], "description": "", "alert_emails": ""}
    return show(request, owner, ACTIVE, "backoffice/webhook_form.html", {
        "endpoint": endpoint, "form": form, "error": error, "choices": _choices(),
        "action": f"/admin/webhooks/{endpoint.id}/edit" if endpoint else "/admin/webhooks/new",
        "submission": None if endpoint else submission_of(submission),
        "max_alert_emails": webhooks_api.MAX_ALERT_EMAILS}, status_code=status_code)


def _checked(request: Request, url: str, event_types: list[str], description: str,
             alert_emails: str) -> tuple[webhooks_api.EndpointIn | None, str | None]:
    """The form as the admin API's model, with the URL checked as the API checks it; or what is wrong."""
    if not event_types:
        return None, "Events: choose at least one event type."
    if len(event_types) > len(domain.EVENT_TYPES) or any("\x00" in v for v in (url, alert_emails, *event_types)):
        return None, "Events: choose event types from the list."
    if len(alert_emails) > 2000:
        return None, f"Alert emails: at most {webhooks_api.MAX_ALERT_EMAILS} addresses, one a line."
    try:
        body = webhooks_api.EndpointIn(url=url.strip(), event_types=event_types, description=description.strip(),
                                       alert_emails=split_list(alert_emails))
    except ValidationError as invalid:
        return None, problem_of(invalid, LABELS)
    try:
        targets.check_url(body.url, private_allowed=targets.private_allowed(
            request.app.state.webhook_settings.private_targets))
    except targets.TargetRefused as refused:
        return None, f"URL: {refused}."
    return body, None


def _typed(url: str, event_types: list[str], description: str, alert_emails: str) -> dict:
    return {"url": typed_again(url, targets.MAX_URL_LENGTH),
            "event_types": [typed_again(t, 100) for t in event_types[:100]],
            "description": typed_again(description, 500), "alert_emails": typed_again(alert_emails, 2000)}


def secret_url(endpoint_id: str, made: str) -> str:
    return f"/admin/webhooks/{endpoint_id}/secret?made={made}"


def _to_show(endpoint: WebhookEndpoint, submission: str, field: str) -> None:
    """Marks the endpoint's new secret as made by this submission, to show once from now on."""
    setattr(endpoint, field, submission)
    endpoint.show_secret_until = utcnow() + SECRET_SHOWN_FOR


def _added_by(session: Session, submission: str) -> WebhookEndpoint | None:
    """The endpoint this submission of the form added already, if it did."""
    if not is_submission_token(submission):
        return None
    return session.exec(select(WebhookEndpoint).where(WebhookEndpoint.submission == submission)).first()


@pages.get("/new", response_class=HTMLResponse)
def new_endpoint_page(request: Request, owner: OwnerDep):
    return _form(request, owner)


@pages.post("/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def create_endpoint(request: Request, session: SessionDep, owner: OwnerDep, url: Annotated[str, Form()] = "",
                    event_types: Annotated[list[str], Form()] = [],  # noqa: B006
                    description: Annotated[str, Form()] = "", alert_emails: Annotated[str, Form()] = "",
                    submission: Annotated[str, Form()] = ""):
    """Registers the endpoint, once per submission, and goes to the page that shows its signing
    secret once."""
    added = _added_by(session, submission)
    if added is not None:
        return RedirectResponse(secret_url(added.id, "created"), status_code=303)
    body, error = (None, RESENT) if not is_submission_token(submission) else \
        _checked(request, url, event_types, description, alert_emails)
    if body is not None:
        try:
            endpoint = endpoints.create(session, url=body.url, event_types=body.event_types,
                                        description=body.description, alert_emails=body.alert_emails, now=utcnow())
        except endpoints.Refused as refused:
            session.rollback()
            error = NOBODY_TOLD if "nobody would be told" in str(refused) else f"{str(refused).capitalize()}."
    if body is None or error is not None:
        return _form(request, owner, form=_typed(url, event_types, description, alert_emails), error=error,
                     status_code=422, submission=submission)
    _to_show(endpoint, submission, "submission")
    endpoint_id = endpoint.id
    try:
        session.commit()
    except IntegrityError:  # the same submission, added meanwhile
        session.rollback()
        added = _added_by(session, submission)
        if added is None:
            raise
        endpoint_id = added.id
    return RedirectResponse(secret_url(endpoint_id, "created"), status_code=303)


@pages.get("/{endpoint_id}/secret", response_class=HTMLResponse)
def secret_page(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep, made: str = ""):
    """The signing secret the last form made, the first time this page is opened (and within a
    few minutes); after that, that it was shown, and nothing else."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    until = as_utc(endpoint.show_secret_until)
    secret = endpoint.secret if until is not None and utcnow() < until else None
    if endpoint.show_secret_until is not None:
        endpoint.show_secret_until = None
        session.add(endpoint)
        session.commit()
    return show(request, owner, ACTIVE, "backoffice/webhook_secret.html", {
        "endpoint": endpoint, "secret": secret, "created": made == "created"}, headers=NO_STORE)


@pages.get("/{endpoint_id}/edit", response_class=HTMLResponse)
def edit_endpoint_page(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep):
    endpoint = _endpoint(session, endpoint_id)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    return _form(request, owner, endpoint=endpoint)


@pages.post("/{endpoint_id}/edit", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def change_endpoint(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep,
                    url: Annotated[str, Form()] = "", event_types: Annotated[list[str], Form()] = [],  # noqa: B006
                    description: Annotated[str, Form()] = "", alert_emails: Annotated[str, Form()] = ""):
    endpoint = _endpoint(session, endpoint_id, lock=True)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    body, error = _checked(request, url, event_types, description, alert_emails)
    if body is not None:
        try:
            endpoints.change(session, endpoint, body.model_dump(), utcnow())
        except endpoints.Refused as refused:
            session.rollback()
            error = NOBODY_TOLD if "nobody would be told" in str(refused) else f"{str(refused).capitalize()}."
    if body is None or error is not None:
        session.rollback()
        return _form(request, owner, endpoint=_endpoint(session, endpoint_id),
                     form=_typed(url, event_types, description, alert_emails), error=error, status_code=422)
    session.commit()
    return RedirectResponse(endpoint_url(endpoint_id, done="saved"), status_code=303)


# --- one endpoint and its deliveries -------------------------------------------------------------


def _detail(request: Request, session: Session, owner: StaffSession, endpoint: WebhookEndpoint, *,
            status: str = "", before: str = "", done: str | None = None, error: str | None = None,
            status_code: int = 200) -> Response:
    status = status if status in STATUSES else ""
    before = before if before.startswith("msg_") and len(before) <= MAX_ID and "\x00" not in before else ""
    try:
        found = endpoints.deliveries_of(session, endpoint.id, status=status or None, before=before or None,
                                        limit=PER_PAGE + 1)
    except endpoints.Refused:  # that delivery is gone (pruned, replayed away): from the newest again
        before, found = "", endpoints.deliveries_of(session, endpoint.id, status=status or None, before=None,
                                                    limit=PER_PAGE + 1)
    shown = found[:PER_PAGE]
    failed = session.exec(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "failed")).one()
    rows = []
    for delivery, attempts in shown:
        try:
            payload = json.dumps(json.loads(delivery.payload), indent=2)
        except ValueError:
            payload = delivery.payload
        rows.append({"delivery": delivery, "attempts": attempts, "payload": payload[:PAYLOAD_SHOWN]})
    filters = {"status": status} if status else {}
    return show(request, owner, ACTIVE, "backoffice/webhook.html", {
        "endpoint": endpoint, "rows": rows, "status": status, "statuses": STATUSES, "failed": failed,
        "done": done, "error": error, "submission": submission_token(),
        "newest_url": endpoint_url(endpoint.id, **filters) if before else None,
        "older_url": endpoint_url(endpoint.id, **filters, before=shown[-1][0].id) if len(found) > PER_PAGE else None,
    }, status_code=status_code)


@pages.get("/{endpoint_id}", response_class=HTMLResponse)
def endpoint_page(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep, status: str = "",
                  before: str = "", done: str = ""):
    """The endpoint, what it takes, and its deliveries newest first (`status=failed`: its dead letters)."""
    endpoint = _endpoint(session, endpoint_id)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    said = {"saved": "Saved.", "enabled": "The endpoint is enabled again: new events go to it.",
            "disabled": "The endpoint is disabled: it gets no more events, and what it had not received is now "
                        "failed (replay it once the endpoint is enabled again).",
            "replayed": "The failed deliveries are being sent again (the oldest 1000 at a time).",
            "replayed-one": "The delivery is being sent again, with the same webhook-id."}.get(done)
    return _detail(request, session, owner, endpoint, status=status, before=before, done=said)


def _acted(request: Request, session: Session, owner: StaffSession, endpoint_id: str, action) -> Response:
    """Runs `action(endpoint)` (returns the `done` query) on the locked endpoint, then says what happened;
    an action the endpoint's state does not allow is told on its page, and changes nothing."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    try:
        done = action(endpoint)
    except deliveries.Conflict as conflict:
        session.rollback()
        return _detail(request, session, owner, _endpoint(session, endpoint_id),
                       error=f"Nothing was replayed: {conflict}.", status_code=409)
    session.commit()
    return RedirectResponse(endpoint_url(endpoint_id, **done), status_code=303)


def _switched(session: Session, enabled: bool):
    def switch(endpoint: WebhookEndpoint) -> dict:
        endpoints.change(session, endpoint, {"enabled": enabled}, utcnow())
        return {"done": "enabled" if enabled else "disabled"}
    return switch


@pages.post("/{endpoint_id}/enable", dependencies=[Depends(require_csrf)])
def enable_endpoint(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Starts a disabled endpoint afresh (its failed deliveries wait for a replay)."""
    return _acted(request, session, owner, endpoint_id, _switched(session, True))


@pages.post("/{endpoint_id}/disable", dependencies=[Depends(require_csrf)])
def disable_endpoint(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """Stops deliveries: what the endpoint had not received becomes failed, replayable later."""
    return _acted(request, session, owner, endpoint_id, _switched(session, False))


@pages.post("/{endpoint_id}/replay-failed", dependencies=[Depends(require_csrf)])
def replay_failed(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """The endpoint's dead letters sent again, in their order per customer (the oldest 1000)."""
    def replay(endpoint: WebhookEndpoint) -> dict:
        deliveries.replay_failed(session, endpoint.id, utcnow())
        return {"done": "replayed"}

    return _acted(request, session, owner, endpoint_id, replay)


@pages.post("/{endpoint_id}/deliveries/{delivery_id}/replay", dependencies=[Depends(require_csrf)])
def replay_delivery(endpoint_id: str, delivery_id: str, request: Request, session: SessionDep,
                    owner: OwnerDep) -> Response:
    """One dead letter sent again, with the same `webhook-id` and a fresh three days of retries."""
    delivery = None if len(delivery_id) > MAX_ID or "\x00" in delivery_id else session.exec(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                      WebhookDelivery.endpoint_id == endpoint_id[:MAX_ID])).first()
    if delivery is None:
        return not_found(request, page_templates,
                         "This endpoint has no such delivery: it may have been delivered and cleaned up since.")

    def replay(_endpoint: WebhookEndpoint) -> dict:
        deliveries.replay(session, delivery, utcnow())
        return {"done": "replayed-one"}

    return _acted(request, session, owner, endpoint_id, replay)


@pages.post("/{endpoint_id}/rotate-secret", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def rotate_secret(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep,
                  submission: Annotated[str, Form()] = ""):
    """A new signing secret, once per submission, shown once on the page it goes to; the old one
    signs nothing from the next attempt on."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    if not is_submission_token(submission):
        session.rollback()
        return _detail(request, session, owner, endpoint, error=RESENT, status_code=422)
    if endpoint.rotation_submission != submission:
        endpoints.rotate_secret(session, endpoint, utcnow())
        _to_show(endpoint, submission, "rotation_submission")
        session.commit()
    return RedirectResponse(secret_url(endpoint_id, "rotated"), status_code=303)


@pages.post("/{endpoint_id}/delete", dependencies=[Depends(require_csrf)])
def delete_endpoint(endpoint_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """The endpoint and everything sent to it; its events stop at once."""
    # Not locked, as in the admin API: an attempt running now locks the endpoint when it ends.
    endpoint = _endpoint(session, endpoint_id)
    if endpoint is None:
        return _no_endpoint(request, endpoint_id)
    endpoints.remove(session, endpoint)
    session.commit()
    return RedirectResponse("/admin/webhooks?done=deleted", status_code=303)

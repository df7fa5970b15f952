"""The back office's operations page, which every service serves about itself (`create_service_app`
adds it): the records its consumers gave up on (its dead letters, on Kafka) with a replay, and the
events its outbox could not publish (parked rows, in its own database) with a release. The same
work as `python -m postsale.runtime.messaging.deadletters`, for the owner in a browser.

Kafka is read within a time limit: a broker that does not answer makes the page say so (the parked
rows, from the database, still show), never a page that hangs. Only the owner may see or act: the
check is in each route, so that every service answers a support user with a page, whichever error
handlers it has.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Awaitable, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from postsale.runtime.backoffice import page_number, page_of_list
from postsale.runtime.clock import as_utc
from postsale.runtime.csrf import require_csrf
from postsale.runtime.messaging.deadletters import DeadLetter, dead_letter_topic, list_dead_letters, replay_dead_letters
from postsale.runtime.messaging.outbox import OutboxMessage, parked_messages, release_parked
from postsale.runtime.settings import KafkaSettings, kafka_settings
from postsale.runtime.staff import OwnerDep, StaffSession, backoffice_context
from postsale.runtime.web import shared_templates

# Included by `create_service_app` under `operations_path(service)`: a path of each service's own,
# so that one Ingress host routes each service's page to it.
pages = APIRouter(include_in_schema=False)


def operations_path(service: str) -> str:
    return f"/admin/operations/{service}"
SERVICES = {"checkout": "Checkout", "entitlements": "Entitlements", "accounts": "Accounts",
            "notifications": "Notifications"}
# Pages of one service that belong with its operations, linked from every service's page.
MORE = {"entitlements": (("Reconciliation report", "/admin/operations/entitlements/reconciliation"),)}
LIST_SECONDS = 5.0  # listing the dead letters: the page waits no longer for Kafka
REPLAY_SECONDS = 30.0
PAGE_SIZE = 50
MAX_IDS = 500
T = TypeVar("T")
_leftovers: set[asyncio.Task] = set()


class KafkaSilent(Exception):
    """Kafka did not answer in time, or refused: the sentence says which, for the page."""


def _forget(task: asyncio.Task) -> None:
    _leftovers.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not log it as lost


async def within(work: Awaitable[T], seconds: float, what: str) -> T:
    """`work`'s result, or `KafkaSilent` after `seconds` or on its failure. A cancelled Kafka client
    still closing is left to finish on its own: the page never waits for it."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:  # the browser went away
        task.cancel()
        raise
    if not done:
        task.cancel()
        _leftovers.add(task)
        task.add_done_callback(_forget)
        raise KafkaSilent(f"Kafka did not answer within {seconds:g} seconds, so {what}. Try again in a moment; "
                          f"if it lasts, check the broker (the service's /readyz says whether it reaches it).")
    try:
        return task.result()
    except Exception as exc:  # noqa: BLE001 - any client failure is the same news for the page
        raise KafkaSilent(f"Kafka could not be reached ({type(exc).__name__}: {str(exc)[:200]}), so {what}. "
                          f"Check the broker and try again.") from exc


def _kafka(request: Request) -> KafkaSettings:
    return getattr(request.app.state, "kafka", None) or kafka_settings()


def _when(text: str) -> str:
    try:
        return as_utc(datetime.fromisoformat(text)).strftime("%d %b %Y, %H:%M:%S UTC")
    except (TypeError, ValueError):
        return text[:40] or "unknown"


def _text(value: bytes | str | None, limit: int) -> str:
    if value is None:
        return ""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[:limit] + "…"


def letter_view(letter: DeadLetter) -> dict[str, Any]:
    return {"offset": letter.offset, "when": _when(letter.failed_at), "topic": letter.original_topic,
            "partition": letter.original_partition, "original_offset": letter.original_offset,
            "key": _text(letter.key, 100), "event_type": letter.event_type, "consumer": letter.consumer,
            "attempts": letter.attempts, "error": _text(f"{letter.error_type}: {letter.error}", 500)}


def parked_view(row: OutboxMessage) -> dict[str, Any]:
    try:
        event_type = json.loads(row.headers).get("ce_type", "?")
    except ValueError:
        event_type = "?"
    return {"id": row.id, "topic": row.topic, "key": _text(row.key, 100), "event_type": event_type,
            "when": as_utc(row.parked_at).strftime("%d %b %Y, %H:%M:%S UTC") if row.parked_at else "",
            "attempts": row.attempts, "error": _text(row.last_error, 500), "size": len(row.value)}


def _done(done: str, count: str) -> str | None:
    n = page_number(count) if count not in ("", "0") else 0
    if done == "replayed":
        return (f"{n} dead letter{'' if n == 1 else 's'} went back to the topics they came from: each consumer "
                f"handles them again (and skips any it had handled)." if n else
                "There was no dead letter left to replay: each one was replayed before.")
    if done == "released":
        return (f"{n} parked event{'' if n == 1 else 's'} released: the outbox relay publishes "
                f"{'it' if n == 1 else 'them'} within moments." if n else
                "There was nothing left to release: those events were released already.")
    return None


async def _page(request: Request, staff: StaffSession, *, page: str = "1", parked_page: str = "1",
                done: str | None = None, error: str | None = None, status_code: int = 200) -> Response:
    state = request.app.state
    service = state.service
    kafka = _kafka(request)
    parked = [parked_view(row) for row in await run_in_threadpool(parked_messages, state.engine)]
    try:
        letters = [letter_view(letter) for letter in reversed(
            await within(list_dead_letters(kafka, service), LIST_SECONDS, "the dead letters cannot be listed now"))]
        kafka_problem = None
    except KafkaSilent as exc:
        letters, kafka_problem = [], str(exc)
    shown, number, more = page_of_list(letters, page_number(page), PAGE_SIZE)
    shown_parked, parked_number, more_parked = page_of_list(parked, page_number(parked_page), PAGE_SIZE)

    def url(**query) -> str:
        return f"/admin/operations/{service}?" + "&".join(f"{k}={v}" for k, v in
                                                {"page": number, "parked_page": parked_number, **query}.items())

    return shared_templates().TemplateResponse(request, "backoffice/operations.html", {
        **backoffice_context(request, staff, "Operations"), "service": service,
        "service_title": SERVICES.get(service, service),
        "services": [{"name": name, "title": title, "current": name == service,
                      "url": f"{getattr(state.urls, f'{name}_url')}/admin/operations/{name}"}
                     for name, title in SERVICES.items()],
        "more": [{"title": title, "url": f"{getattr(state.urls, f'{name}_url')}{path}"}
                 for name, links in MORE.items() for title, path in links],
        "dead_letter_topic": kafka.topic(dead_letter_topic(service)), "kafka_problem": kafka_problem,
        "letters": shown, "letters_count": len(letters), "parked": shown_parked, "parked_count": len(parked),
        "previous_url": url(page=number - 1) + "#dead-letters" if number > 1 else None,
        "next_url": url(page=number + 1) + "#dead-letters" if more else None,
        "previous_parked_url": url(parked_page=parked_number - 1) + "#parked" if parked_number > 1 else None,
        "next_parked_url": url(parked_page=parked_number + 1) + "#parked" if more_parked else None,
        "done": done, "error": error,
    }, status_code=status_code)


@pages.get("", response_class=HTMLResponse)
async def operations_page(request: Request, staff: OwnerDep, page: str = "1", parked_page: str = "1",
                          done: str = "", count: str = ""):
    """This service's dead letters and parked outbox events (owner only)."""
    return await _page(request, staff, page=page, parked_page=parked_page, done=_done(done, count))


@pages.post("/replay", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def replay(request: Request, staff: OwnerDep):
    """Every dead letter not replayed before goes back to the topic it came from, unchanged (its
    consumers' inboxes make that safe)."""
    try:
        letters = await within(replay_dead_letters(_kafka(request), request.app.state.service), REPLAY_SECONDS,
                               "the replay may not have finished (replaying again is safe: each consumer skips "
                               "what it handled)")
    except KafkaSilent as exc:
        return await _page(request, staff, error=str(exc), status_code=503)
    return RedirectResponse(f"/admin/operations/{request.app.state.service}?done=replayed&count={len(letters)}",
                            status_code=303)


@pages.post("/release", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def release(request: Request, staff: OwnerDep):
    """Puts parked outbox events back in the queue (`ids`, or every one with `all`), once what made
    the broker refuse them is fixed; the relay publishes them next."""
    form = await request.form()
    everything = form.get("all") == "1"
    raw = [value for value in form.getlist("ids") if isinstance(value, str)]
    if not everything and (not raw or len(raw) > MAX_IDS
                           or not all(v.isascii() and v.isdigit() and 0 < len(v) <= 12 for v in raw)):
        return await _page(request, staff, status_code=422,
                           error="Choose the parked events to release with their buttons; nothing was released.")
    released = await run_in_threadpool(release_parked, request.app.state.engine,
                                       None if everything else [int(v) for v in raw])
    return RedirectResponse(f"/admin/operations/{request.app.state.service}?done=released&count={len(released)}",
                            status_code=303)

"""What every service's HTTP side shares: health, readiness, metrics, JSON logs, page templates."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader
from prometheus_client import make_asgi_app
from pydantic import AwareDatetime, BaseModel, ConfigDict, Strict, field_validator

from postsale.runtime import http_telemetry
from postsale.runtime.clock import utcnow
from postsale.runtime.messaging.outbox import observe_outbox
from postsale.runtime.staff import backoffice_problem, is_backoffice_page
from postsale.runtime.tracing import current_span_id, current_trace_id

SHARED_TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def shared_templates() -> Jinja2Templates:
    """The shared templates alone: the pages a service's app renders without templates of its own."""
    return templates_for(SHARED_TEMPLATES)


def templates_for(service_templates: Path) -> Jinja2Templates:
    """The service's own templates, falling back to the shared layout."""
    from postsale.runtime.csrf import csrf_field
    from postsale.runtime.theme import store_brand, theme_style

    templates = Jinja2Templates(directory=str(service_templates))
    templates.env.loader = ChoiceLoader([FileSystemLoader(str(service_templates)), FileSystemLoader(str(SHARED_TEMPLATES))])
    # Every page's forms carry the CSRF token; every page takes the seller's theme (base.html).
    templates.env.globals["csrf_field"] = csrf_field
    templates.env.globals["theme_style"] = theme_style
    templates.env.globals["store_brand"] = store_brand
    return templates


OUTBOX_MAX_AGE_SECONDS = 60.0
"""`/readyz` fails while the oldest unsent (and unparked) outbox row is older than this."""


def add_operational_routes(app: FastAPI, *, outbox_max_age: float = OUTBOX_MAX_AGE_SECONDS,
                           clock: Callable[[], datetime] = utcnow) -> None:
    """`/healthz` (the process answers), `/readyz` (database and broker reachable, outbox
    flowing), `/metrics`; and every request traced and counted (`http_telemetry`)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        problems: dict[str, str] = {}
        body: dict = {}
        try:
            # Reading the outbox also proves the database answers.
            outbox = await run_in_threadpool(observe_outbox, request.app.state.engine, clock())
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems["database"] = str(exc)
        else:
            body["outbox"] = {"backlog": outbox.backlog, "oldest_unsent_age_seconds": round(outbox.oldest_age, 3),
                              "parked": outbox.parked}
            # Events stuck in the outbox are changes other services do not see: a stalled relay
            # must show, even while the broker answers pings.
            if outbox.oldest_age > outbox_max_age:
                problems["outbox"] = (f"the oldest unsent outbox row has waited {outbox.oldest_age:.0f}s, "
                                      f"over the {outbox_max_age:g}s limit")
        broker = getattr(request.app.state, "broker", None)
        if broker is None or not await broker.ping(timeout=2):
            problems["kafka"] = "broker not reachable"
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems, **body}, status_code=503)
        return JSONResponse({"status": "ready", **body})

    app.mount("/metrics", make_asgi_app())
    http_telemetry.install(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # 422 with each problem spelled out; the default already does this, but keep the
        # shape stable for clients: {"detail": [...], "message": "..."}. A back-office form
        # that cannot be read is a page that says which field.
        errors = exc.errors()
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
        if is_backoffice_page(request):
            return backoffice_problem(request, shared_templates(), 422,
                                      f"That form could not be read ({message}). Go back and send it again.")
        return JSONResponse({"message": message, "detail": jsonable(errors)}, status_code=422)


def jsonable(errors: list[dict]) -> list[dict]:
    # The problems echo the input: a number JSON cannot hold (NaN, Infinity, 1e400 read as
    # infinity) is echoed as its text, or the answer itself would fail to render (a 500).
    return json.loads(json.dumps(errors, default=str), parse_constant=str)


class JsonFormatter(logging.Formatter):
    converter = time.gmtime  # timestamps in UTC, whatever the host's zone

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = current_span_id()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str | None = None) -> None:
    """Every log line of the process as one JSON object on standard output.

    The root logger gets the one handler; every logger that brought handlers of its own
    (uvicorn's, which print `INFO:     Application startup complete.` to standard error) loses
    them and passes its lines up to it, and Python's warnings are logged too. Uvicorn sets up
    its loggers before it calls the app factory, which calls this, so even its first lines
    (`Started server process`) come out as JSON. `POSTSALE_LOG_LEVEL` (default INFO) sets the level.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("POSTSALE_LOG_LEVEL") or "INFO").upper())
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    # Off, then on: hooks `warnings.showwarning` again even when something replaced it since an
    # earlier call (captureWarnings(True) alone does nothing once it has been called).
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # Each request is counted and traced instead (`postsale_http_requests_total`, spans).
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def require_admin(request: Request) -> None:
    """The seller's admin API takes `Authorization: Bearer <the service's admin token>`. Async: as
    a plain `def`, FastAPI would send this comparison to the thread pool, a hop that costs more."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = request.app.state.admin_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="admin token missing or wrong",
                            headers={"WWW-Authenticate": "Bearer"})


_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s.\x00-\x1f\x7f]{2,}$")


def normalize_email(raw: str) -> str | None:
    """The address in a lower-case canonical form, or None when it is not an email address."""
    email = raw.strip().lower()
    return email if len(email) <= 254 and _EMAIL.match(email) else None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(item) for item in value)
    return False


# A moment in a request body: its ISO 8601 text with an offset (JSON has no date type, so the
# text is read even in a strict `RequestBody`).
Moment = Annotated[AwareDatetime, Strict(False)]


class RequestBody(BaseModel):
    """The base of an API's request bodies, refused with a 422 before a use case runs when one
    holds a NUL character anywhere (PostgreSQL cannot store it, and would answer a 500
    mid-transaction), a field the model does not know (a misspelt setting would otherwise be
    dropped, and a PUT would reset it to its default), or a value of another JSON type than the
    field's (`true` or `"500"` for an amount is a mistake, not 1 or 500)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Before each field's own checks, and by that field's name, so the problem says where it is.
    # (No subclass may name a validator `_refuse_nul`: pydantic would take it for this one.)
    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("cannot hold NUL characters")
        return value


MAX_CUSTOMER_FORM_BYTES = 1024 * 1024
"""A customer's form (an email, a name, a card, a reason of up to 500 characters) is a few KiB."""


class RefuseNul:
    """ASGI middleware: a NUL character in the path, the query string (`%00`) or the fields of a
    customer's form (`application/x-www-form-urlencoded` outside `/admin/`) is refused with a 400
    before any route runs, so none reaches the database (PostgreSQL cannot store it and would
    answer a 500) or an email. A person gets a page, a program JSON. The back office's forms say
    what is wrong beside the field, with what was typed (`backoffice.form_text`); an API's JSON
    body is its model's to refuse (`RequestBody`). Pure ASGI: a request without a customer's form
    pays a substring test; a form's body (small, and read whole by the route anyway) is read
    first, then replayed, and one past `MAX_CUSTOMER_FORM_BYTES` is refused (413) as it comes."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _refused(scope, receive, send, "The address holds a NUL character (%00); remove it.")
            return
        if not scope["path"].startswith("/admin/") and _content_type(scope) == b"application/x-www-form-urlencoded":
            messages, size, tail, nul = [], 0, b"", False
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_CUSTOMER_FORM_BYTES:
                    await _refused(scope, receive, send, "This form is far larger than any form here can be; "
                                                         "shorten what you typed.", 413)
                    return
                seen = tail + chunk  # "%00" may span two chunks
                nul, tail = nul or b"%00" in seen or b"\x00" in chunk, seen[-2:]
                if not message.get("more_body", False):
                    break
            if nul:
                await _refused(scope, receive, send, "A field of the form holds a NUL character; remove it.")
                return
            replay = iter(messages)

            async def receive_again():
                return next(replay, None) or await receive()

            await self.app(scope, receive_again, send)
            return
        await self.app(scope, receive, send)


def _content_type(scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


async def _refused(scope, receive, send, detail: str, status_code: int = 400) -> None:
    accept = next((value for name, value in scope.get("headers", ()) if name == b"accept"), b"")
    if b"text/html" in accept:
        response: Response = HTMLResponse(
            f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bad request</title></head>"
            f"<body><h1>This request cannot be used</h1><p>{detail}</p><p>Go back and try again.</p></body></html>",
            status_code=status_code)
    else:
        response = JSONResponse({"detail": detail}, status_code=status_code)
    await response(scope, receive, send)

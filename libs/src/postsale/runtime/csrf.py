"""Cross-site request forgery: every form that changes state carries a token another site cannot
know, and comes from one of our own pages.

The browser gets a random secret in the `postsale_csrf` cookie (HTTP-only, SameSite=Lax, `Secure`
and the cookie domain as the login cookie has them), shared by every service on the host. A form's
token is an HMAC of that secret and the id of the browser's login session, so it is bound to both:
a token from before a login or from another browser is refused. Any service can make and check it
without a shared key, since each one reads the cookie and verifies the session.

A page renders `{{ csrf_field(request) }}` inside each POST form (a Jinja global of every
`templates_for` environment); its route takes `Depends(require_csrf)`. The check also refuses a
request whose `Origin` (or, lacking it, `Referer`) is not one of our services, and one a browser
marks `Sec-Fetch-Site: cross-site`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from markupsafe import Markup
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postsale.runtime.auth import CustomerSession, cookie_attributes

CSRF_COOKIE = "postsale_csrf"
CSRF_FIELD = "csrf_token"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
REFUSED = ("This form has expired or did not come from this site, so nothing was changed. "
           "Go back, reload the page, and send the form again.")


class CsrfRefused(HTTPException):
    """A state-changing form without a valid token, or from another site (403, with what to do)."""

    def __init__(self) -> None:
        super().__init__(status_code=403, detail=REFUSED)


def _browser_secret(request: Request) -> str:
    secret = request.cookies.get(CSRF_COOKIE, "")
    if _SECRET.match(secret):
        return secret
    fresh = getattr(request.state, "csrf_new_secret", None)
    if fresh is None:
        fresh = request.state.csrf_new_secret = secrets.token_urlsafe(32)
    return fresh


def _session_id(request: Request) -> str:
    verifier = getattr(request.app.state, "session_verifier", None)
    if verifier is None:
        return ""
    cached = getattr(request.state, "csrf_session", None)
    if cached is None:
        from postsale.runtime.auth import SESSION_COOKIE

        customer: CustomerSession | None = verifier.verify(request.cookies.get(SESSION_COOKIE))
        cached = request.state.csrf_session = customer.session_id if customer else ""
    return cached


def csrf_token(request: Request) -> str:
    """The token the forms of this page carry."""
    digest = hmac.new(_browser_secret(request).encode(), f"postsale-csrf:{_session_id(request)}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_field(request: Request) -> Markup:
    """The hidden input a POST form puts inside itself."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token(request))


def our_origins(request: Request) -> set[str]:
    urls = request.app.state.urls
    return {_origin(url) for url in (urls.checkout_url, urls.entitlements_url, urls.accounts_url,
                                     urls.notifications_url)}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def request_origin(request: Request) -> str | None:
    """Where a browser says the request comes from: `Origin`, else the origin of `Referer`, else None."""
    origin = request.headers.get("origin")
    if origin:
        return origin.lower()
    referer = request.headers.get("referer")
    return _origin(referer) if referer else None


def from_elsewhere(request: Request) -> bool:
    """A browser says this request comes from a page that is not one of our services."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request_origin(request)
    return origin is not None and origin not in our_origins(request)


def _submitted(value) -> str | None:
    return value if isinstance(value, str) and not isinstance(value, UploadFile) else None


async def require_csrf(request: Request) -> None:
    """A dependency of each route that takes a state-changing form: raises `CsrfRefused` unless the
    form carries this browser's token and comes from one of our pages."""
    form = await request.form()
    submitted = _submitted(form.get(CSRF_FIELD))
    if from_elsewhere(request) or not submitted or not hmac.compare_digest(submitted, csrf_token(request)):
        raise CsrfRefused()


async def require_csrf_or_our_page(request: Request) -> None:
    """As `require_csrf`, but a form without a token field is also taken when the browser says it
    comes from another of our services' pages (its `Origin`): for forms that another service renders
    before it carries the token (the library's logout button). A request without `Origin` and
    `Referer` (not a browser's form) still needs the token; a form with a token must be right."""
    form = await request.form()
    if CSRF_FIELD not in form and not from_elsewhere(request) and request_origin(request) is not None:
        return  # a browser's form from one of our pages: OWASP's origin check, without the token
    await require_csrf(request)


class CsrfCookie:
    """ASGI middleware: sets the browser's CSRF secret on the answer of a page that made one
    (`request.state.csrf_new_secret`, which lives in the scope's `state`). Pure ASGI rather than
    `@app.middleware("http")`, whose task and memory channel per request cost more than this check
    on every request, most of which make no secret."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # made here, so a copy of the scope further in shares it
        app = scope["app"]  # the service's, before a mounted app further in puts itself there

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                fresh = state.get("csrf_new_secret")
                if fresh is not None:
                    # The header exactly as `Response.set_cookie` writes it.
                    cookie = Response()
                    cookie.set_cookie(CSRF_COOKIE, fresh, **cookie_attributes(app.state.urls.accounts_url))
                    message.setdefault("headers", [])
                    headers = MutableHeaders(scope=message)
                    for name, value in cookie.raw_headers:
                        if name == b"set-cookie":
                            headers.append("set-cookie", value.decode("latin-1"))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def add_csrf_cookie(app: FastAPI) -> None:
    """Sets the browser's CSRF secret on the response of a page that made one."""
    app.add_middleware(CsrfCookie)

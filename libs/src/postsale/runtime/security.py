"""Security headers on every response of every service (`create_service_app` adds them).

- `Content-Security-Policy`: only our own scripts, styles and frames (and Stripe.js, which checkout's
  payment page loads); `frame-ancestors 'none'`, so no other site can frame a page; no plugins, no
  `<base>`. Inline scripts and styles stay allowed by default because checkout's pages use them; a
  service whose pages have no script at all (accounts) passes `STRICT_POLICY`.
- `Referrer-Policy: strict-origin-when-cross-origin`: a page's address (which may hold a login or
  setup token) never leaves our origin; forms still send their `Origin`, which the CSRF check reads.
- `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` (for browsers without CSP level 2),
  and `Cache-Control: no-store` on pages, which may show a customer's details.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' https://js.stripe.com",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: https:",
    "font-src 'self' data:",
    "connect-src 'self' https://api.stripe.com",
    "frame-src https://js.stripe.com https://hooks.stripe.com",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
])
STRICT_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src 'self' data: https:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
])


def security_headers(content_security_policy: str = DEFAULT_POLICY) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy,
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


class SecurityHeaders:
    """ASGI middleware adding `headers` to every answer that lacks them (`explorer` instead on the
    API explorer's pages), and `Cache-Control: no-store` to an HTML one. Pure ASGI rather than
    `@app.middleware("http")` (Starlette's BaseHTTPMiddleware), which runs the rest of the app in
    a task of its own and streams its answer through a memory channel: that cost more than this
    whole job on every request."""

    def __init__(self, app: ASGIApp, headers: dict[str, str], explorer: dict[str, str],
                 explorer_paths: tuple[str | None, ...]) -> None:
        self.app = app
        self.headers, self.explorer, self.explorer_paths = headers, explorer, explorer_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chosen = self.explorer if scope["path"] in self.explorer_paths else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in chosen.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_security_headers(app: FastAPI, content_security_policy: str = DEFAULT_POLICY) -> None:
    headers = security_headers(content_security_policy)
    # FastAPI's API explorer loads its scripts from a CDN: it keeps every header but the policy.
    explorer = {name: value for name, value in headers.items() if name != "Content-Security-Policy"}
    app.add_middleware(SecurityHeaders, headers=headers, explorer=explorer,
                       explorer_paths=(app.docs_url, app.redoc_url))

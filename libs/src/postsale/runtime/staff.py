"""The seller's staff in the back office: one login for the pages of every service.

Accounts keeps the staff (roles `owner` and `support`) and their sessions, and signs each session
into the `postsale_staff` cookie as a short-lived EdDSA JWT with the customer sessions' key (its own
audience, so a customer's token is never a staff token and the reverse). Every service verifies the
cookie locally against accounts' published keys: a page of any service takes `StaffDep` (or
`OwnerDep` for what only the owner may do), which sends a browser without a valid token to accounts'
`/admin/login`. An expired token is renewed there without a password while its session is open
(accounts reads its own rows), so logging out or removing a staff member ends the session in every
service within `TOKEN_LIFETIME`.

The back-office pages share `backoffice/base.html` (layout, navigation, CSS) from the shared
templates; `backoffice_context` gives it what it needs. An error on a back-office page is a page in
that layout (`backoffice_problem`), while the JSON admin API on the same paths keeps answering JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

import jwt
from fastapi import Depends, HTTPException, Request, Response
from jwt import PyJWKClient

from postsale.runtime.auth import ISSUER, cookie_attributes

STAFF_COOKIE = "postsale_staff"
STAFF_AUDIENCE = "postsale-staff"
TOKEN_LIFETIME = timedelta(minutes=15)
Role = Literal["owner", "support"]
ROLES: tuple[Role, ...] = ("owner", "support")
OWNER_ONLY = "Only the store's owner may do this. Ask the owner, or log in as the owner."


@dataclass(frozen=True)
class StaffSession:
    staff_id: str
    email: str
    name: str
    role: Role
    session_id: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


class StaffVerifier:
    """Verifies staff tokens against accounts' keys: its JWKS (other services), or a key given
    directly (accounts itself, which holds the signing key)."""

    def __init__(self, jwks_url: str | None = None, key=None) -> None:
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5) if jwks_url else None
        self._key = key

    def claims(self, token: str | None, *, verify_exp: bool = True) -> dict | None:
        """The token's claims when accounts signed it for staff; None otherwise. With `verify_exp`
        False, an expired token still answers (accounts renews it while its session is open)."""
        if not token or len(token) > 4096:
            return None
        try:
            key = self._key if self._key is not None else self._jwks.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=STAFF_AUDIENCE, issuer=ISSUER,
                                options={"verify_exp": verify_exp})
        except jwt.PyJWTError:
            return None
        return claims if claims.get("role") in ROLES else None

    def verify(self, token: str | None) -> StaffSession | None:
        claims = self.claims(token)
        if claims is None:
            return None
        return StaffSession(staff_id=claims["sub"], email=claims["email"], name=claims.get("name", ""),
                            role=claims["role"], session_id=claims["sid"])


def _verifier(request: Request) -> StaffVerifier:
    state = request.app.state
    verifier = getattr(state, "staff_verifier", None)
    if verifier is None:  # made on first use: services built by `create_service_app` need nothing more
        verifier = state.staff_verifier = StaffVerifier(f"{state.urls.accounts_url}/.well-known/jwks.json")
    return verifier


def current_staff(request: Request) -> StaffSession | None:
    """The staff member logged in to the back office, or None."""
    return _verifier(request).verify(request.cookies.get(STAFF_COOKIE))


def staff_login_url(request: Request, next_url: str | None = None) -> str:
    query = urlencode({"next": next_url or str(request.url)})
    return f"{request.app.state.urls.accounts_url}/admin/login?{query}"


def require_staff(request: Request) -> StaffSession:
    """A dependency of every back-office page: the staff member, or a redirect to the staff login
    (which renews an expired token at once while its session is open)."""
    staff = current_staff(request)
    if staff is None:
        raise HTTPException(status_code=303, detail="Log in to the back office first.",
                            headers={"Location": staff_login_url(request)})
    return staff


def require_owner(staff: Annotated[StaffSession, Depends(require_staff)]) -> StaffSession:
    """A dependency of what only the owner may do (refunds, prices, staff): 403 for support."""
    if not staff.is_owner:
        raise HTTPException(status_code=403, detail=OWNER_ONLY)
    return staff


StaffDep = Annotated[StaffSession, Depends(require_staff)]
OwnerDep = Annotated[StaffSession, Depends(require_owner)]


def set_staff_cookie(response: Response, token: str, *, accounts_url: str) -> None:
    # The cookie outlives the token: an expired token is what accounts renews without a password.
    response.set_cookie(STAFF_COOKIE, token, max_age=12 * 3600, **cookie_attributes(accounts_url))


def clear_staff_cookie(response: Response, *, accounts_url: str) -> None:
    attributes = cookie_attributes(accounts_url)
    response.delete_cookie(STAFF_COOKIE, path=attributes["path"], domain=attributes["domain"],
                           secure=attributes["secure"], httponly=True, samesite="lax")


# --- the shared layout --------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    label: str
    service: str  # the service that serves it: its public URL comes first
    path: str
    owner_only: bool = False


# The back office's navigation, one entry per page as it lands, in the order a seller works.
NAVIGATION: tuple[Section, ...] = (
    Section("Dashboard", "checkout", "/admin/dashboard"),
    Section("Sales", "checkout", "/admin/sales"),
    Section("Customers", "accounts", "/admin/customers"),
    Section("Offers", "checkout", "/admin/offers"),
    Section("Products", "entitlements", "/admin/products"),
    Section("Emails", "notifications", "/admin/mail"),
    Section("Webhooks", "notifications", "/admin/webhooks", owner_only=True),
    Section("Theme", "accounts", "/admin/store-theme"),
    Section("Operations", "checkout", "/admin/operations/checkout", owner_only=True),
    Section("Staff", "accounts", "/admin/staff", owner_only=True),
)


def _service_url(request: Request, service: str) -> str:
    return getattr(request.app.state.urls, f"{service}_url")


def backoffice_context(request: Request, staff: StaffSession, active: str) -> dict:
    """What `backoffice/base.html` needs: who is logged in, the navigation they may use (a support
    user never sees an owner's page), which entry is open, and where logging out goes."""
    accounts = _service_url(request, "accounts")
    return {
        "staff": staff,
        "navigation": [{"label": s.label, "url": f"{_service_url(request, s.service)}{s.path}",
                        "active": s.label == active} for s in NAVIGATION if staff.is_owner or not s.owner_only],
        "staff_logout_url": f"{accounts}/admin/logout",
    }


def is_backoffice_page(request: Request) -> bool:
    """A person's browser on a back-office page: it asks for HTML and sends no bearer token (the
    JSON admin API shares the `/admin` paths and answers programs in JSON)."""
    accept = request.headers.get("accept", "")
    return (request.url.path.startswith("/admin/") and "text/html" in accept
            and "application/json" not in accept and "authorization" not in request.headers)


def backoffice_problem(request: Request, templates, status_code: int, message: str,
                       headers: dict | None = None, *, title: str | None = None) -> Response:
    """The back office's error page: a redirect stays a redirect (the way to the staff login); any
    other error says what went wrong, in the layout when the staff member is logged in."""
    if 300 <= status_code < 400:
        return Response(status_code=status_code, headers=headers)
    no_route = message in ("Not Found", "Method Not Allowed")  # Starlette's words for an address nothing serves
    staff = current_staff(request)
    return templates.TemplateResponse(request, "backoffice/problem.html", {
        **(backoffice_context(request, staff, "") if staff else {}),
        "title": title or ("This page does not exist" if status_code in (404, 405) else
                           "This is not for you" if status_code in (401, 403) else "This did not work"),
        "message": "The address may have been mistyped, or what it led to was removed." if no_route else message,
        # Back to this page after logging in; after a refused form, to the back office's first page.
        "login_url": staff_login_url(request) if request.method == "GET"
        else f"{_service_url(request, 'accounts')}/admin/login",
    }, status_code=status_code, headers=headers)

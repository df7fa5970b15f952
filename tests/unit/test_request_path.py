"""What every request of every service passes through, in process: the security headers and the CSRF
cookie (pure ASGI middleware), the session verification and its memory of verified tokens, and the
request's database session."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import text

from postsale.accounts.adapters.signing import SessionSigner, generate_private_key_pem
from postsale.runtime.auth import (SESSION_COOKIE, CustomerSession, RevokedSessions, SessionVerifier, VerifiedTokens,
                                   current_customer)
from postsale.runtime.clock import utcnow
from postsale.runtime.csrf import CSRF_COOKIE, add_csrf_cookie, csrf_field
from postsale.runtime.db import SessionDep, make_engine
from postsale.runtime.security import DEFAULT_POLICY, add_security_headers
from postsale.runtime.settings import PublicUrls

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier_with(signer: SessionSigner, revoked: RevokedSessions | None = None,
                  verified: VerifiedTokens | None = None) -> SessionVerifier:
    """The services' verifier, given accounts' key rather than fetching its JWKS; counts signature checks."""
    verifier = SessionVerifier("http://127.0.0.1:9/.well-known/jwks.json", revoked=revoked, verified=verified)
    key = jwt.PyJWK(signer.jwks()["keys"][0])
    verifier.checked = 0  # type: ignore[attr-defined]

    def signing_key(_token: str) -> jwt.PyJWK:
        verifier.checked += 1  # type: ignore[attr-defined]
        return key

    verifier._jwks.get_signing_key_from_jwt = signing_key  # type: ignore[method-assign]
    return verifier


@pytest.fixture
def signer() -> SessionSigner:
    return SessionSigner(generate_private_key_pem())


def token(signer: SessionSigner, session_id: str = "ses_1", lifetime: timedelta = timedelta(hours=1)) -> str:
    return signer.sign(customer_id="cus_ann", email="ann@example.com", session_id=session_id, lifetime=lifetime)


def test_a_verified_token_is_known_until_its_session_ends(signer):
    revoked = RevokedSessions()
    verifier = verifier_with(signer, revoked)
    ann = token(signer)
    assert verifier.verify(ann) == CustomerSession("cus_ann", "ann@example.com", "ses_1")
    assert verifier.verify_known(ann) == (True, CustomerSession("cus_ann", "ann@example.com", "ses_1"))
    assert verifier.verify(ann) is not None and verifier.checked == 1
    revoked.add("ses_1", utcnow() + timedelta(hours=1))
    assert verifier.verify(ann) is None and verifier.verify_known(ann) == (True, None)
    assert verifier.verify_known(None) == (True, None) and verifier.verify_known("") == (True, None)


def test_an_unknown_or_forged_token_is_not_known_and_a_forged_one_is_never_kept(signer):
    verifier = verifier_with(signer)
    forged = token(SessionSigner(generate_private_key_pem()))  # another key, the same key id lookup
    assert verifier.verify_known(forged) == (False, None)
    assert verifier.verify(forged) is None and verifier.verify(forged) is None
    assert verifier.checked == 2 and len(verifier.verified) == 0


def test_a_known_token_is_forgotten_at_its_expiry_and_after_a_few_minutes_at_most(signer):
    clock = Clock()
    tokens = VerifiedTokens(size=10, ttl=300, clock=clock)
    ann, bob = CustomerSession("cus_ann", "a@example.com", "s1"), CustomerSession("cus_bob", "b@example.com", "s2")
    tokens.put("short", ann, expires_at=clock.now + 60)
    tokens.put("long", bob, expires_at=clock.now + 86_400)
    clock.now += 59.9
    assert (tokens.get("short"), tokens.get("long")) == (ann, bob)
    clock.now += 0.1  # at `exp`, refused (as PyJWT refuses it)
    assert (tokens.get("short"), tokens.get("long")) == (None, bob)
    clock.now += 240  # past the five minutes: verified again (a withdrawn key stops working)
    assert tokens.get("long") is None and len(tokens) == 0


def test_the_least_recently_used_token_goes_first_past_the_bound():
    clock = Clock()
    tokens = VerifiedTokens(size=2, clock=clock)
    sessions = {name: CustomerSession(f"cus_{name}", f"{name}@example.com", name) for name in ("a", "b", "c")}
    tokens.put("a", sessions["a"], clock.now + 60)
    tokens.put("b", sessions["b"], clock.now + 60)
    assert tokens.get("a") == sessions["a"]  # used: "b" is now the oldest
    tokens.put("c", sessions["c"], clock.now + 60)
    assert (tokens.get("a"), tokens.get("b"), tokens.get("c")) == (sessions["a"], None, sessions["c"])


def test_an_expired_token_is_refused_even_when_it_was_known(signer):
    verifier = verifier_with(signer)
    brief = token(signer, lifetime=timedelta(seconds=1))
    assert verifier.verify(brief) is not None
    verifier.verified._clock = lambda: float("inf")  # time passes beyond its `exp`  # noqa: SLF001
    assert verifier.verify_known(brief) == (False, None)
    verifier.verified._clock = time.time  # noqa: SLF001
    expired = token(signer, lifetime=timedelta(seconds=-1))
    assert verifier.verify(expired) is None


def app_with_the_shared_middleware(verifier) -> FastAPI:
    app = FastAPI()
    app.state.urls = PublicUrls()
    app.state.session_verifier = verifier
    add_csrf_cookie(app)
    add_security_headers(app)

    @app.get("/api/me")
    async def me(customer: CustomerSession | None = Depends(current_customer)) -> dict:
        return {"customer": customer.customer_id if customer else None}

    @app.get("/page", response_class=HTMLResponse)
    async def page(request: Request) -> str:
        return f"<form method=post>{csrf_field(request)}</form>"

    @app.get("/framed", response_class=HTMLResponse)
    async def framed() -> HTMLResponse:
        return HTMLResponse("<p>preview</p>", headers={"Content-Security-Policy": "frame-ancestors 'self'",
                                                       "Cache-Control": "max-age=60"})

    return app


def test_every_answer_carries_the_security_headers_and_pages_are_not_stored(signer):
    with TestClient(app_with_the_shared_middleware(verifier_with(signer))) as client:
        data, page, framed, docs = (client.get(path) for path in ("/api/me", "/page", "/framed", "/docs"))
    for answer in (data, page, framed, docs):
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert data.headers["content-security-policy"] == page.headers["content-security-policy"] == DEFAULT_POLICY
    assert "cache-control" not in data.headers and page.headers["cache-control"] == "no-store"
    # What a route sets itself stays, once: the shared headers only fill in what is missing.
    assert framed.headers.get_list("content-security-policy") == ["frame-ancestors 'self'"]
    assert framed.headers.get_list("cache-control") == ["max-age=60"]
    assert "content-security-policy" not in docs.headers  # the API explorer loads its scripts from a CDN


def test_a_page_that_makes_a_csrf_secret_sets_its_cookie_once(signer):
    with TestClient(app_with_the_shared_middleware(verifier_with(signer))) as client:
        first = client.get("/page")
        assert first.cookies.get(CSRF_COOKIE) and "httponly" in first.headers["set-cookie"].lower()
        assert "samesite=lax" in first.headers["set-cookie"].lower()
        again = client.get("/page")  # the browser sends it back: no new one
        assert CSRF_COOKIE not in again.cookies and "set-cookie" not in again.headers
        assert "set-cookie" not in client.get("/api/me").headers  # no form, no secret


def test_a_known_session_is_answered_without_the_thread_pool(signer, monkeypatch):
    verifier = verifier_with(signer)
    ann = token(signer)
    with TestClient(app_with_the_shared_middleware(verifier)) as client:
        client.cookies.set(SESSION_COOKIE, ann)
        assert client.get("/api/me").json() == {"customer": "cus_ann"}  # verified in the pool, then known

        async def no_pool(*_args, **_kwargs):
            raise AssertionError("a known token was sent to the thread pool")

        monkeypatch.setattr("postsale.runtime.auth.run_in_threadpool", no_pool)
        assert client.get("/api/me").json() == {"customer": "cus_ann"}
        client.cookies.clear()
        assert client.get("/api/me").json() == {"customer": None}
    assert verifier.checked == 1


def test_the_request_s_session_is_closed_after_it_and_a_failed_request_s_work_is_undone(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'request.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE things (name TEXT)"))
    app, seen = FastAPI(), []
    app.state.engine = engine

    @app.post("/things/{name}")
    def add(name: str, session: SessionDep) -> dict:
        seen.append(session)
        session.execute(text("INSERT INTO things VALUES (:name)"), {"name": name})
        if name == "broken":
            raise RuntimeError("boom")
        session.commit()
        return {"added": name}

    @app.get("/things")
    def things(session: SessionDep) -> list[str]:
        seen.append(session)
        return list(session.execute(text("SELECT name FROM things ORDER BY name")).scalars())

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/things/kept").status_code == 200
        assert client.post("/things/broken").status_code == 500
        assert client.get("/things").json() == ["kept"]
    assert all(not session.in_transaction() for session in seen)  # every connection went back to the pool
    assert engine.pool.checkedout() == 0
    engine.dispose()

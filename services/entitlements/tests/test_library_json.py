"""The library's JSON (`GET /api/library`): the same products, names and order as the library page's
read model, from its own lighter query; and over HTTP with a real session token, which is refused
once its session ends even though the token verified moments before."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from delivery_support import T0, admin_app, database_url, handle, migrated_engine, paid, product, refunded
from postsale.accounts.adapters.signing import SessionSigner, generate_private_key_pem
from postsale.entitlements import access_views, grants, handlers
from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.entrypoints import pages
from postsale.runtime.auth import SESSION_COOKIE, RevokedSessions, SessionVerifier

ANN, BOB = "cus_ann", "cus_bob"


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.unit),
                        pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request, tmp_path):
    """On SQLite the JSON's read runs in the thread pool; on PostgreSQL, in the event loop."""
    engine = migrated_engine(database_url(request, tmp_path, "library"))
    yield engine
    engine.dispose()


def shown(engine, customer_id: str, now) -> tuple[list, list]:
    """What the JSON lists, and what the page's `library` lists, as (id, name, description, type)."""
    with engine.connect() as connection:
        rows = connection.execute(access_views.LIBRARY_ROWS, {"customer_id": customer_id}).all()
    light = [(p.product_id, p.name, p.description, p.delivery_type) for p in access_views.library_products(rows, now)]
    with Session(engine) as session:
        full = [(p.product_id, p.name, p.description, p.delivery_type)
                for p in access_views.library(session, customer_id, now)]
    return light, full


def test_the_json_lists_what_the_library_lists_whatever_became_of_each_grant(engine):
    course, ebook, keys = (product(engine, "Course", "membership"), product(engine, "Ebook", "download"),
                           product(engine, "Keys", "license_key"))
    gone = "prod_not_in_the_catalog"  # bought, but not (or no longer) a product entitlements lists
    with Session(engine) as session:
        session.get(Product, ebook).description = "The book."
        session.commit()
    at = lambda hours: T0 + timedelta(hours=hours)  # noqa: E731
    handle(engine, handlers.grant_access_for_purchase, paid(course, at=at(0)), at(0))
    bought_twice = paid(ebook, delivery_type="download", at=at(1))
    handle(engine, handlers.grant_access_for_purchase, bought_twice, at(1))
    handle(engine, handlers.grant_access_for_purchase, paid(ebook, delivery_type="download", at=at(2)), at(2))
    handle(engine, handlers.apply_refund, refunded(bought_twice, at(3)), at(3))  # the other grant still gives it
    refunded_keys = paid(keys, delivery_type="license_key", at=at(4))
    handle(engine, handlers.grant_access_for_purchase, refunded_keys, at(4))
    handle(engine, handlers.apply_refund, refunded(refunded_keys, at(5)), at(5))  # nothing gives it any more
    handle(engine, handlers.grant_access_for_purchase, paid(gone, at=at(6)), at(6))
    with Session(engine) as session:  # a seller's grant of ten days, newest of all
        grants.grant_by_seller(session, customer_id=ANN, product_id=course, days=10, now=at(7))
        session.commit()
    handle(engine, handlers.grant_access_for_purchase, paid(keys, customer_id=BOB, delivery_type="license_key"), at(8))

    light, full = shown(engine, ANN, at(9))
    assert light == full
    assert [name for _, name, _, _ in light] == ["Course", f"Product {gone}", "Ebook"]
    assert light[2][2] == "The book."
    assert shown(engine, BOB, at(9)) == ([(keys, "Keys", "", "license_key")],) * 2
    # Past the seller's ten days the course is still the customer's by the purchase: only its
    # place in the order changes (the newest grant that gives it).
    light, full = shown(engine, ANN, at(7) + timedelta(days=11))
    assert light == full and [name for _, name, _, _ in light] == [f"Product {gone}", "Ebook", "Course"]
    assert shown(engine, "cus_nobody", at(9)) == ([], [])


class KeyOfTheSigner(SessionVerifier):
    """The service's verifier, with accounts' key given rather than fetched from its JWKS."""

    def __init__(self, signer: SessionSigner, revoked: RevokedSessions) -> None:
        super().__init__("http://127.0.0.1:9/.well-known/jwks.json", revoked=revoked)
        self.key = jwt.PyJWK(signer.jwks()["keys"][0])
        self.signatures_checked = 0

        def signing_key(_token: str) -> jwt.PyJWK:
            self.signatures_checked += 1
            return self.key

        self._jwks.get_signing_key_from_jwt = signing_key  # type: ignore[method-assign]


def test_the_json_answers_a_logged_in_customer_and_refuses_an_ended_session(engine):
    course = product(engine, "Course", "membership")
    handle(engine, handlers.grant_access_for_purchase, paid(course), T0)
    app = admin_app(engine, pages.router)
    signer, revoked = SessionSigner(generate_private_key_pem()), RevokedSessions()
    app.state.session_verifier = verifier = KeyOfTheSigner(signer, revoked)
    token = signer.sign(customer_id=ANN, email="ann@example.com", session_id="ses_1", lifetime=timedelta(hours=1))
    with TestClient(app) as client:
        assert client.get("/api/library").status_code == 401
        client.cookies.set(SESSION_COOKIE, token)
        for _ in range(3):
            answer = client.get("/api/library")
            assert answer.status_code == 200
            assert answer.json() == [{"id": course, "name": "Course", "description": "", "delivery_type": "membership"}]
        assert verifier.signatures_checked == 1  # the token verified once, then known
        revoked.add("ses_1", T0 + timedelta(days=1))  # logged out (the accounts feed's doing)
        assert client.get("/api/library").status_code == 401
        client.cookies.set(SESSION_COOKIE, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
        assert client.get("/api/library").status_code == 401  # a forged signature, never known

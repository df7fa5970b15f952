"""A refund confirmed twice (a double click, a reload, two posts racing) refunds once: the refund
confirmation's form carries a one-time token, the refund records it under a unique constraint and
the payment provider's idempotency key is made of it. The JSON admin API, whose refunds carry no
token, refunds as before."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from postsale.checkout import billing
from postsale.checkout.adapters.payments.port import RefundResult
from postsale.checkout.adapters.tables import Purchase, Refund, SandboxPayment
from test_checkout_backoffice_sales import Store, confirmed_refund, refund_count, text

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return Store(tmp_path, monkeypatch)


def test_a_refund_confirmed_twice_refunds_once(store, monkeypatch):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    provider, keys = store.app.state.payments, []
    asked = provider.refund

    def refund(**call):
        keys.append(call["idempotency_key"])
        return asked(**call)

    monkeypatch.setattr(provider, "refund", refund)
    owner = store.browser()
    form = confirmed_refund(owner, purchase, "10,50", "late delivery")  # a comma is a decimal mark
    assert form["amount"] == "10.50"
    first = owner.post(f"/admin/sales/{purchase.id}/refund", data=form)
    again = owner.post(f"/admin/sales/{purchase.id}/refund", data=form)  # a double click, or a reload
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"] == f"/admin/sales/{purchase.id}?done=refunded"
    assert len(keys) == 1 and form["submission"] in keys[0]  # one call to the provider, keyed by the form
    assert refund_count(store) == 1
    with Session(store.app.state.engine) as session:
        assert session.get(Purchase, purchase.id).refunded == 1050
    after = text(owner.get(again.headers["location"]))
    assert "Refunded 10.50 EUR to ann@example.com. 38.50 EUR is left to refund." in after

    # Without the confirmation's token, or with a made-up one: nothing is refunded.
    for forged in ({"amount": "5.00"}, {"amount": "5.00", "submission": "x"},
                   {"amount": "5.00", "submission": "not a token, with spaces"}):
        refused = owner.post(f"/admin/sales/{purchase.id}/refund", data=forged)
        assert refused.status_code == 422 and "Nothing was refunded: review the refund and confirm it" in text(refused)
    # A new confirmation is a new refund, of the same amount too.
    assert owner.post(f"/admin/sales/{purchase.id}/refund",
                      data=confirmed_refund(owner, purchase, "10.50")).status_code == 303
    assert refund_count(store) == 2 and len(keys) == 2

    # The same token on another purchase: it is the other purchase's form, and refunds nothing there.
    store.buy(course, "bob@example.com")
    other = store.purchase("bob@example.com", course)
    moved = owner.post(f"/admin/sales/{other.id}/refund", data={**form, "amount": "1.00"})
    assert moved.status_code == 409 and "belongs to another purchase" in text(moved)
    assert refund_count(store) == 2


def test_two_posts_racing_past_the_lookup_are_one_refund_at_the_provider(store, monkeypatch):
    """Two posts of one form at the same moment both find no refund of its token yet: the provider's
    idempotency key is the token, so the provider makes one refund, and checkout records it once."""
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    owner = store.browser()
    form = confirmed_refund(owner, purchase, "10.50")
    monkeypatch.setattr(billing, "refund_of_submission", lambda session, submission: None)
    for _ in range(2):
        assert owner.post(f"/admin/sales/{purchase.id}/refund", data=form).status_code == 303
    assert refund_count(store) == 1
    with Session(store.app.state.engine) as session:
        assert session.get(Purchase, purchase.id).refunded == 1050
        assert session.get(SandboxPayment, purchase.provider_payment_id).refunded == 1050


def test_when_the_lookup_misses_the_unique_token_decides(store, monkeypatch):
    """Should both posts reach the database (the lookup missed, the provider answered twice), the
    unique token refuses the second refund row: the page leads to the first one's page."""
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    owner = store.browser()
    form = confirmed_refund(owner, purchase, "10.50")
    assert owner.post(f"/admin/sales/{purchase.id}/refund", data=form).status_code == 303
    found, misses = billing.refund_of_submission, iter([None, None])
    monkeypatch.setattr(billing, "refund_of_submission", lambda session, token: next(misses, found(session, token)))
    monkeypatch.setattr(store.app.state.payments, "refund",
                        lambda **call: RefundResult("sbxre_another", call["amount"], True))
    again = owner.post(f"/admin/sales/{purchase.id}/refund", data=form)
    assert again.status_code == 303 and again.headers["location"] == f"/admin/sales/{purchase.id}?done=refunded"
    assert refund_count(store) == 1


def test_the_refunds_table_holds_a_form_token_once(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    with Session(store.app.state.engine) as session:
        for n in (1, 2):
            session.add(Refund(id=f"re_{n}", purchase_id=purchase.id, provider="sandbox", provider_refund_id=f"rf_{n}",
                               amount=100, currency="EUR", actor="seller", refunded_at=purchase.completed_at,
                               submission="the-same-form-token"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_the_json_api_refunds_without_a_token_as_before(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    for _ in range(2):  # two partial refunds of the same amount: two refunds
        made = store.api.post(f"/admin/purchases/{purchase.id}/refunds", json={"amount": 1000})
        assert made.status_code == 201, made.text
    assert made.json()["total_refunded"]["amount"] == 2000 and refund_count(store) == 2


def test_the_json_api_refuses_an_amount_of_another_type_and_refunds_nothing(store):
    course = store.offer("Course", 4900, ["prod_course"])
    store.buy(course, "ann@example.com")
    purchase = store.purchase("ann@example.com", course)
    # `true` read as 1 and "500" as 500 once refunded 0.01 and 5.00; NaN was a 500 while its refusal was written.
    for amount in ("true", '"500"', "NaN", "Infinity", "1e400", "12.5"):
        refused = store.api.post(f"/admin/purchases/{purchase.id}/refunds", content=f'{{"amount": {amount}}}',
                                 headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.json()["message"].startswith("amount: "), (amount, refused.text)
    misspelt = store.api.post(f"/admin/purchases/{purchase.id}/refunds", json={"amount": 100, "reson": "late"})
    assert misspelt.status_code == 422 and misspelt.json()["message"] == "reson: Extra inputs are not permitted"
    assert refund_count(store) == 0

"""The payment page's Stripe partial (stripe_payment.html): the Payment Element, its settings and its script."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

import postsale.checkout
from postsale.runtime.web import templates_for


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.scripts.append(data)

    def by_id(self, element_id: str) -> tuple[str, dict[str, str | None]]:
        [found] = [(tag, attrs) for tag, attrs in self.tags if attrs.get("id") == element_id]
        return found


def render(**context) -> str:
    env = templates_for(Path(postsale.checkout.__file__).parent / "templates").env  # as the pages render it
    values = {"publishable_key": "pk_test_postsale", "complete_url": "/checkout/cs_abc123/complete",
              "amount_due": 4900, "currency": "EUR", "form_id": "pay-form", **context}
    return env.get_template("stripe_payment.html").render(**values)


@pytest.mark.unit
def test_the_partial_carries_the_payment_element_and_its_settings():
    page = _Elements()
    page.feed(render())

    assert page.by_id("payment-element")[0] == "div"
    tag, box = page.by_id("stripe-payment")
    assert box["data-publishable-key"] == "pk_test_postsale"
    assert box["data-form-id"] == "pay-form"
    assert (box["data-amount"], box["data-currency"]) == ("4900", "eur")
    assert box["data-complete-url"] == "/checkout/cs_abc123/complete"
    tag, alert = page.by_id("payment-message")
    assert alert["role"] == "alert"
    assert ("script", {"src": "https://js.stripe.com/v3/"}) in page.tags

    [script] = page.scripts
    for step in ('Stripe(box.dataset.publishableKey)', 'stripe.elements(intentOptions(amount))',
                 'mode: "payment", amount: due, currency: currency, setupFutureUsage: "off_session"',
                 'mode: "setup", currency: currency, setupFutureUsage: "off_session"',
                 'elements.create("payment")', 'mount("#payment-element")',
                 "elements.submit()", "fetch(form.action", 'method: "POST"', "new FormData(form)",
                 'Accept: "application/json"', 'answer.status === "requires_action"', "stripe.confirmPayment(confirm)",
                 'answer.mode === "setup"', "stripe.confirmSetup(confirm)", 'redirect: "if_required"',
                 "return_url: window.location.origin + completeUrl", "postTo(completeUrl, data)",
                 '(answer.status === "succeeded" || answer.status === "returned") && answer.redirect', "window.location.assign(answer.redirect)",
                 "fail(answer.message)", "result.error.message", "submitted.error.message"):
        assert step in script, step


@pytest.mark.unit
def test_the_partial_escapes_what_it_is_given():
    html = render(publishable_key='pk_test_"><script>alert(1)</script>',
                  complete_url='/checkout/x"><b>/complete', form_id="f", amount_due=0)
    page = _Elements()
    page.feed(html)
    _, box = page.by_id("stripe-payment")
    assert box["data-publishable-key"] == 'pk_test_"><script>alert(1)</script>'
    assert box["data-complete-url"] == '/checkout/x"><b>/complete'
    assert box["data-amount"] == "0"
    assert "<script>alert(1)" not in html

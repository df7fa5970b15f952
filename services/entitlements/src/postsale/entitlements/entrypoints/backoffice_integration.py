"""A third-party membership's delivery settings in the back office: where Postsale calls (the
endpoint URL), where the library sends customers (the members' area URL), and the signing secret
the platform checks each call with. The owner's alone: the endpoint is where Postsale sends every
customer's email and access, and whoever holds the secret can forge Postsale's calls. Support sees
both URLs on the product's page, never the form nor the secret.

A stored secret is never shown again: only the answer to the form that made it (a new product, a
new secret) shows it, once, as the webhooks' secrets are. An owner who types a secret of their own
has it already. The endpoint must be one Postsale may call (`delivery/integration.py`): a private
or loopback address is refused unless the setting allows it, for development.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from postsale.entitlements import products
from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.delivery.base import product_settings
from postsale.entitlements.delivery.integration import IntegrationSettings
from postsale.entitlements.entrypoints.backoffice_forms import ACTIVE, product_or_404, render
from postsale.runtime.backoffice import FormError, form_text, problem_of, typed_again
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, StaffSession
from postsale.runtime.standard_webhooks import new_secret

pages = APIRouter(include_in_schema=False)
MAX_URL, MAX_SECRET = 2000, 200
LABELS = {"endpoint_url": "Endpoint URL", "access_url": "Members' area URL", "secret": "Signing secret"}


def secret_page(request: Request, owner: StaffSession, product: Product, *, created: bool) -> Response:
    """The only page that shows the signing secret: the answer to the form that made it."""
    return render(request, owner, "integration_secret.html", ACTIVE, status_code=201 if created else 200,
                  product=product, secret=(product.delivery_settings or {}).get("secret", ""), created=created)


def _integration(session, product_id: str) -> Product:
    """The third-party membership the address names; a 404 page (the app renders it) for anything else."""
    product = product_or_404(session, product_id)
    if product.delivery_type != "integration":
        raise HTTPException(status_code=404, detail=f"{product.name} is not a third-party membership: it has no "
                                                    "endpoint.")
    return product


def settings_page(request: Request, owner: StaffSession, product: Product, *, typed: dict | None = None,
                  error: str | None = None, status_code: int = 200) -> Response:
    stored = product_settings(product, IntegrationSettings)
    form = typed or {"endpoint_url": stored.endpoint_url or "", "access_url": stored.access_url or ""}
    return render(request, owner, "integration.html", ACTIVE, status_code=status_code, product=product, form=form,
                  secret_set=bool(stored.secret), error=error, limits={"url": MAX_URL, "secret": MAX_SECRET})


@pages.get("/products/{product_id}/edit/integration", response_class=HTMLResponse)
def integration_settings(product_id: str, request: Request, session: SessionDep, owner: OwnerDep):
    """Where Postsale calls, where customers go, and replacing the signing secret."""
    product = _integration(session, product_id)
    return settings_page(request, owner, product)


@pages.post("/products/{product_id}/edit/integration", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def save_integration(product_id: str, request: Request, session: SessionDep, owner: OwnerDep,
                     endpoint_url: Annotated[str, Form()] = "", access_url: Annotated[str, Form()] = "",
                     secret: Annotated[str, Form()] = ""):
    """Replaces the URLs, and the secret when one is typed (the current one is kept otherwise);
    deliveries waiting for a retry are tried again at once."""
    product = _integration(session, product_id)
    try:
        typed_secret = form_text(secret, label="Signing secret", max_length=MAX_SECRET)
        settings = {
            "endpoint_url": form_text(endpoint_url, label="Endpoint URL", max_length=MAX_URL) or None,
            "access_url": form_text(access_url, label="Members' area URL", max_length=MAX_URL) or None,
            "secret": typed_secret or (product.delivery_settings or {}).get("secret")}
        products.configure_delivery(session, product.id, settings)
    except (FormError, ValidationError) as exc:
        session.rollback()
        message = problem_of(exc, LABELS) if isinstance(exc, ValidationError) else str(exc)
        # What was typed goes back into the form, never the secret typed.
        typed = {"endpoint_url": typed_again(endpoint_url, MAX_URL), "access_url": typed_again(access_url, MAX_URL)}
        return settings_page(request, owner, product, typed=typed, error=message, status_code=422)
    products.retry_deliveries(session, product.id)
    session.commit()
    done = "delivery_secret" if typed_secret else "delivery"
    return RedirectResponse(f"/admin/products/{product.id}/edit?done={done}", status_code=303)


@pages.post("/products/{product_id}/edit/integration/secret", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def make_secret(product_id: str, request: Request, session: SessionDep, owner: OwnerDep):
    """A new signing secret, shown once; calls are signed with it from the next attempt on."""
    product = _integration(session, product_id)
    try:
        products.configure_delivery(session, product.id, {**(product.delivery_settings or {}), "secret": new_secret()})
    except ValidationError as exc:  # an endpoint saved before it was checked, that may not be called
        session.rollback()
        return settings_page(request, owner, product, error=problem_of(exc, LABELS) + " Change it first.",
                             status_code=422)
    session.commit()
    session.refresh(product)
    return secret_page(request, owner, product, created=False)

"""The back office's products, served by entitlements (whose data they are): the list, creating a
product with its delivery type, and the edit page: name and description, the delivery type's
settings, archiving, and a download's files (`backoffice_files`), a membership's sections and
lessons (`backoffice_content`) or a third-party membership's endpoint (`backoffice_integration`,
the owner's alone). The form that creates a product carries a one-time token: posted twice, it
creates one product.

They sit under `/admin/products` beside the JSON admin API (bearer token), on paths it does not
use: the API owns `GET /admin/products/{id}` and its subpaths (`/content`, `/files`, `/sections`,
...), so every page of one product lives under `/admin/products/{id}/edit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, func, select

from postsale.contracts.events import DELIVERY_KIND_WORDS
from postsale.entitlements import products
from postsale.entitlements.adapters.tables import Lesson, Product, Section
from postsale.entitlements.delivery import download, strategy_for
from postsale.entitlements.delivery.base import product_settings
from postsale.entitlements.entrypoints import backoffice_content, backoffice_files, backoffice_integration
from postsale.entitlements.entrypoints.backoffice_forms import ACTIVE, product_or_404, readable_size, render, whole_number
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.backoffice import (FormError, create_once, form_text, not_found, page_number, problem_of,
                                         submission_of, typed_again)
from postsale.runtime.clock import utcnow
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import StaffDep, StaffSession

pages = APIRouter(prefix="/admin", include_in_schema=False)
MAX_NAME, MAX_DESCRIPTION = 200, 5000
MAX_DETAILS = 20_000


@dataclass(frozen=True)
class Choice:
    """A delivery type as a seller names it; physical goods, services, bookings and registrations
    are all `none` (fulfilled elsewhere), told apart by the product's `kind` setting."""

    value: str
    delivery_type: str
    label: str
    hint: str


CHOICES = (
    Choice("membership", "membership", DELIVERY_KIND_WORDS["membership"].capitalize(),
           "Sections and lessons (text, video or audio) your customers open from their library."),
    Choice("integration", "integration", DELIVERY_KIND_WORDS["integration"].capitalize(),
           "Access lives on another platform: Postsale calls its endpoint, signed, to grant and revoke."),
    Choice("download", "download", DELIVERY_KIND_WORDS["download"].capitalize(),
           "Files your customers download through short-lived links, by email and from their library."),
    Choice("license_key", "license_key", DELIVERY_KIND_WORDS["license_key"].capitalize(),
           "A key for your software, issued at purchase, that stops working when access ends."),
    Choice("goods", "none", "Physical goods", "Shipped by your own fulfilment system, which Postsale tells."),
    Choice("service", "none", "A service", "Delivered by you; Postsale records the purchase and tells your systems."),
    Choice("booking", "none", "A booking", "A calendar booking, made in your booking tool."),
    Choice("webinar", "none", "A registration", "A webinar or event registration, made in your event tool."),
)
CHOICE = {c.value: c for c in CHOICES}
FULFILMENT_KINDS = [c for c in CHOICES if c.delivery_type == "none"]
DONE = {
    "created": "The product is created. Set up how it is delivered below.",
    "saved": "The name and description are saved.",
    "delivery": "The delivery settings are saved; deliveries still waiting are tried again now.",
    "delivery_secret": "The delivery settings are saved with the signing secret you typed; deliveries still waiting "
                       "are tried again now.",
    "archived": "The product is archived: new offers cannot grant it. Customers who have it keep it.",
    "unarchived": "The product is active again: offers may grant it.",
    "uploaded": "The file is uploaded; customers who were waiting for it get their link now.",
    "file_removed": "The file is removed; its links stop working.",
}
SETTING_LABELS = {"activation_limit": "Activation limit", "expires_days": "Key lifetime in days",
                  "prefix": "Key prefix", "download_limit": "Download limit", "kind": "What it is",
                  "details": "Details"}


def choice_of(product: Product) -> Choice:
    if product.delivery_type == "none":
        return CHOICE[str((product.delivery_settings or {}).get("kind", "service"))]
    return CHOICE[product.delivery_type]


# --- the list and a new product ----------------------------------------------------------------


@pages.get("/products", response_class=HTMLResponse)
def products_page(request: Request, session: SessionDep, staff: StaffDep, page: str = "1"):
    """Every product, active ones first, newest first, 50 a page."""
    number = page_number(page)
    found, total = products.list_products(session, number)

    def page_url(n: int) -> str:
        return "/admin/products?" + urlencode({"page": n})

    return render(request, staff, "products.html", ACTIVE, products=[(p, choice_of(p)) for p in found],
                  total=total, page=number,
                  previous_url=page_url(number - 1) if number > 1 else None,
                  next_url=page_url(number + 1) if number * products.PAGE_SIZE < total else None)


def _new_product_page(request: Request, staff: StaffSession, *, form: dict | None = None, error: str | None = None,
                      status_code: int = 200) -> Response:
    return render(request, staff, "new_product.html", ACTIVE, status_code=status_code, form=form or {},
                  error=error, choices=CHOICES, limits={"name": MAX_NAME, "description": MAX_DESCRIPTION})


@pages.get("/products/new", response_class=HTMLResponse)
def new_product_page(request: Request, staff: StaffDep):
    return _new_product_page(request, staff)


@pages.post("/products/new", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def create_product(request: Request, session: SessionDep, staff: StaffDep, name: Annotated[str, Form()] = "",
                   description: Annotated[str, Form()] = "", delivery_type: Annotated[str, Form()] = "",
                   submission: Annotated[str, Form()] = ""):
    """Creates the product (published as `ProductPublished`, so offers may grant it) and opens its
    edit page for the delivery settings. A third-party membership gets a signing secret: the owner's
    answer shows it, once (support never sees it; the owner can make a new one later). The same
    form posted again creates nothing more and opens the product it created."""
    form = {"name": typed_again(name, MAX_NAME), "description": typed_again(description, MAX_DESCRIPTION),
            "delivery_type": typed_again(delivery_type, 20)}
    try:
        token = submission_of(submission)
        clean_name = form_text(name, label="Name", max_length=MAX_NAME, required=True)
        clean_description = form_text(description, label="Description", max_length=MAX_DESCRIPTION)
        choice = CHOICE.get(delivery_type)
        if choice is None:
            raise FormError("Choose how the product is delivered.")
    except FormError as exc:
        return _new_product_page(request, staff, form=form, error=str(exc), status_code=422)
    product, created = create_once(session, Product, token, lambda: products.create_product(
        session, name=clean_name, description=clean_description, delivery_type=choice.delivery_type,
        settings={"kind": choice.value} if choice.delivery_type == "none" else None))
    if created and staff.is_owner and product.delivery_type == "integration":
        return backoffice_integration.secret_page(request, staff, product, created=True)
    return RedirectResponse(f"/admin/products/{product.id}/edit?done=created", status_code=303)


# --- one product ------------------------------------------------------------------------------


def _delivery_values(product: Product) -> dict:
    """The delivery form's values from the product's settings; never an integration's secret (the
    page says whether one is set)."""
    settings = product_settings(product, strategy_for(product.delivery_type).settings_model).model_dump()
    if product.delivery_type == "none":
        settings["details"] = "\n".join(f"{k} = {v}" for k, v in settings.get("details", {}).items())
    secret_set = bool(settings.pop("secret", None))
    return {**{k: "" if v is None else str(v) for k, v in settings.items()},
            **({"secret_set": secret_set} if product.delivery_type == "integration" else {})}


def edit_page(request: Request, session: Session, staff: StaffSession, product: Product, *, done: str = "",
              details: dict | None = None, details_error: str | None = None, delivery: dict | None = None,
              delivery_error: str | None = None, upload_error: str | None = None, status_code: int = 200) -> Response:
    sections = lessons = 0
    if product.delivery_type == "membership":
        sections = session.exec(select(func.count()).select_from(Section).where(Section.product_id == product.id)).one()
        lessons = session.exec(select(func.count()).select_from(Lesson).where(Lesson.product_id == product.id)).one()
    limit = request.app.state.delivery_settings.max_upload_bytes
    return render(
        request, staff, "product.html", ACTIVE, status_code=status_code, product=product, choice=choice_of(product),
        done=DONE.get(done), upload_error=upload_error,
        details=details or {"name": product.name, "description": product.description}, details_error=details_error,
        delivery=delivery or _delivery_values(product), delivery_error=delivery_error,
        kinds=FULFILMENT_KINDS, sections=sections, lessons=lessons,
        files=download.live_files(session, product.id) if product.delivery_type == "download" else [],
        upload_limit=readable_size(limit),
        limits={"name": MAX_NAME, "description": MAX_DESCRIPTION, "details": MAX_DETAILS})


@pages.get("/products/{product_id}/edit", response_class=HTMLResponse)
def edit_product_page(product_id: str, request: Request, session: SessionDep, staff: StaffDep, done: str = ""):
    """A product's name, description, delivery settings, files or lessons, and status."""
    product = product_or_404(session, product_id)
    return edit_page(request, session, staff, product, done=done)


@pages.post("/products/{product_id}/edit", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def save_details(product_id: str, request: Request, session: SessionDep, staff: StaffDep,
                 name: Annotated[str, Form()] = "", description: Annotated[str, Form()] = ""):
    """Renames or redescribes the product (published as `ProductUpdated`)."""
    product = product_or_404(session, product_id)
    typed = {"name": typed_again(name, MAX_NAME), "description": typed_again(description, MAX_DESCRIPTION)}
    try:
        clean_name = form_text(name, label="Name", max_length=MAX_NAME, required=True)
        clean_description = form_text(description, label="Description", max_length=MAX_DESCRIPTION)
    except FormError as exc:
        return edit_page(request, session, staff, product, details=typed, details_error=str(exc), status_code=422)
    products.update_product(session, product.id, name=clean_name, description=clean_description)
    session.commit()
    return RedirectResponse(f"/admin/products/{product.id}/edit?done=saved", status_code=303)


def _details(raw: str) -> dict[str, str]:
    """`name = value` lines (or `name: value`) into the fulfilment's details."""
    details: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if not sep or not name.strip():
            raise FormError(f"Details: write one per line as name = value (line {number} is not).")
        details[name.strip()] = value.strip()
    return details


def _settings_from(product: Product, typed: dict) -> dict:
    """The delivery settings the form asks for (an integration's are on their own page)."""
    kind = product.delivery_type
    if kind == "license_key":
        prefix = form_text(typed["prefix"], label="Key prefix", max_length=8).upper()
        if not (prefix.isascii() and (prefix.isalnum() or not prefix)):
            raise FormError("Key prefix: up to 8 letters or digits, like MYAPP, or leave it empty.")
        return {"activation_limit": whole_number(typed["activation_limit"], label="Activation limit", low=1,
                                                 high=10_000),
                "expires_days": whole_number(typed["expires_days"], label="Key lifetime in days", low=1, high=36_500),
                "prefix": prefix}
    if kind == "download":
        return {"download_limit": whole_number(typed["download_limit"], label="Download limit", low=1, high=100_000)}
    if kind == "none":
        if typed["kind"] not in {c.value for c in FULFILMENT_KINDS}:
            raise FormError("Choose what the product is.")
        return {"kind": typed["kind"], "details": _details(form_text(typed["details"], label="Details",
                                                                     max_length=MAX_DETAILS))}
    raise FormError("A hosted membership has no delivery settings: edit its sections and lessons instead.")


@pages.post("/products/{product_id}/edit/delivery", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def save_delivery(product_id: str, request: Request, session: SessionDep, staff: StaffDep,
                  activation_limit: Annotated[str, Form()] = "", expires_days: Annotated[str, Form()] = "",
                  prefix: Annotated[str, Form()] = "", download_limit: Annotated[str, Form()] = "",
                  kind: Annotated[str, Form()] = "", details: Annotated[str, Form()] = ""):
    """Replaces the product's delivery settings; deliveries already made stay as they were, and
    those waiting for a retry are tried again at once with the new settings. A third-party
    membership's are the owner's, on their own page (`backoffice_integration`)."""
    product = product_or_404(session, product_id)
    if product.delivery_type == "integration":
        raise HTTPException(403, detail="A third-party membership's endpoint and signing secret are changed on "
                                        "their own page, by the store's owner only.")
    typed = {"activation_limit": activation_limit, "expires_days": expires_days, "prefix": prefix,
             "download_limit": download_limit, "kind": kind, "details": details}
    try:
        settings = _settings_from(product, typed)
        products.configure_delivery(session, product.id, settings)
    except (FormError, ValidationError) as exc:
        session.rollback()
        message = problem_of(exc, SETTING_LABELS) if isinstance(exc, ValidationError) else str(exc)
        # What was typed goes back into the form, cut to its field's size.
        shown = {name: typed_again(value, MAX_DETAILS if name == "details" else 100) for name, value in typed.items()}
        return edit_page(request, session, staff, product, delivery=shown, delivery_error=message, status_code=422)
    products.retry_deliveries(session, product.id)
    session.commit()
    return RedirectResponse(f"/admin/products/{product.id}/edit?done=delivery", status_code=303)


@pages.post("/products/{product_id}/edit/archive", dependencies=[Depends(require_csrf)])
def archive(product_id: str, request: Request, session: SessionDep, staff: StaffDep) -> Response:
    """Takes the product out of new offers (`ProductArchived`); customers who have it keep it."""
    product_or_404(session, product_id)
    products.archive_product(session, product_id)
    session.commit()
    return RedirectResponse(f"/admin/products/{product_id}/edit?done=archived", status_code=303)


@pages.post("/products/{product_id}/edit/unarchive", dependencies=[Depends(require_csrf)])
def unarchive(product_id: str, request: Request, session: SessionDep, staff: StaffDep) -> Response:
    product_or_404(session, product_id)
    products.unarchive_product(session, product_id)
    session.commit()
    return RedirectResponse(f"/admin/products/{product_id}/edit?done=unarchived", status_code=303)


# --- a download's files ------------------------------------------------------------------------


def _upload_refused(request: Request, staff: StaffSession, product_id: str,
                    refused: backoffice_files.UploadRefused) -> Response:
    with Session(request.app.state.engine) as session:
        product = product_or_404(session, product_id)
        return edit_page(request, session, staff, product, upload_error=str(refused),
                         status_code=refused.status_code)


@pages.post("/products/{product_id}/edit/files", response_class=HTMLResponse)
async def upload_file(product_id: str, request: Request, staff: StaffDep) -> Response:
    """Adds a file to a download product; customers waiting for a first file get their link. The
    form's CSRF token is checked inside the stream (`backoffice_files`), not by `require_csrf`."""
    try:
        await backoffice_files.receive(request, product_id)
    except backoffice_files.UploadRefused as refused:
        return await run_in_threadpool(_upload_refused, request, staff, product_id, refused)
    return RedirectResponse(f"/admin/products/{product_id}/edit?done=uploaded", status_code=303)


@pages.post("/products/{product_id}/edit/files/{file_id}/remove", dependencies=[Depends(require_csrf)])
def remove_file(product_id: str, file_id: str, request: Request, session: SessionDep, staff: StaffDep) -> Response:
    """Takes the file out of the product and deletes it; links to it stop working."""
    product_or_404(session, product_id)
    try:
        file = download.remove_file(session, product_id, file_id, utcnow())
    except download.UnknownFile:
        return not_found(request, templates, f"This product has no file {file_id[:100]} (it may be removed already).")
    session.commit()
    request.app.state.storage.delete(file.storage_key)
    return RedirectResponse(f"/admin/products/{product_id}/edit?done=file_removed", status_code=303)


pages.include_router(backoffice_content.pages)
pages.include_router(backoffice_integration.pages)

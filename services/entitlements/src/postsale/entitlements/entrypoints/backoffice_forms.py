"""What entitlements' back-office pages share beyond the shared helpers (`postsale.runtime.backoffice`):
their templates, and reading ids and whole numbers a seller typed."""

from __future__ import annotations

import re

from fastapi import HTTPException, Request
from fastapi.responses import Response
from sqlmodel import Session

from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.backoffice import FormError, submission_token
from postsale.runtime.staff import StaffSession, backoffice_context

ACTIVE = "Products"  # the navigation entry of the product pages
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")


def readable_size(size: int) -> str:
    """1536 -> "1.5 KB": what a seller reads for a file's size or the upload limit."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


templates.env.filters["file_size"] = readable_size
# Each form that creates something carries a fresh one: `<input type="hidden" name="submission" ...>`.
templates.env.globals["submission_token"] = submission_token


def is_id(value: str) -> bool:
    """An id entitlements could have made (so a NUL, a slash or a megabyte names nothing)."""
    return bool(_ID.match(value))


def whole_number(value: str, *, label: str, low: int, high: int) -> int | None:
    """A whole number between `low` and `high`; None when left empty."""
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or not low <= int(value) <= high:
        raise FormError(f"{label}: enter a whole number from {low} to {high}, or leave it empty.")
    return int(value)


def render(request: Request, staff: StaffSession, template: str, active: str, *, status_code: int = 200,
           **context) -> Response:
    return templates.TemplateResponse(request, f"backoffice/{template}", {
        **backoffice_context(request, staff, active), **context}, status_code=status_code)


def find_product(session: Session, product_id: str) -> Product | None:
    return session.get(Product, product_id) if is_id(product_id) else None


def product_or_404(session: Session, product_id: str) -> Product:
    """The product the address names; a 404 page (the app renders it in the back office) otherwise."""
    product = find_product(session, product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"There is no product {product_id[:100]}. Open it from the "
                                                    "products list instead.")
    return product


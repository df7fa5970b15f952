"""What entitlements' back-office pages share: their templates, and reading what a seller typed into
a form (page numbers, ids, text and numbers) into values or a sentence saying what to fix."""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import Response

from sqlmodel import Session

from postsale.entitlements.adapters.tables import Product
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.staff import StaffSession, backoffice_context

ACTIVE = "Products"  # the navigation entry of the product pages
MAX_PAGE = 10_000
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")


def readable_size(size: int) -> str:
    """1536 -> "1.5 KB": what a seller reads for a file's size or the upload limit."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


templates.env.filters["file_size"] = readable_size


class FormError(ValueError):
    """What the seller must fix in the form, in a sentence."""


def page_number(raw: str) -> int:
    """A list's page from the address; anything that is not a page number is the first page."""
    # isascii: "²" is a digit to str.isdigit but not to int()
    return min(int(raw), MAX_PAGE) if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 5 and int(raw) > 0 else 1


def is_id(value: str) -> bool:
    """An id entitlements could have made (so a NUL, a slash or a megabyte names nothing)."""
    return bool(_ID.match(value))


def text(value: str, *, label: str, max_length: int, required: bool = False) -> str:
    """The text as typed, without the spaces around it."""
    value = value.strip()
    if "\x00" in value:
        raise FormError(f"{label} cannot hold NUL characters.")
    if required and not value:
        raise FormError(f"Enter the {label.lower()}.")
    if len(value) > max_length:
        raise FormError(f"{label} can be at most {max_length} characters.")
    return value


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


def not_found(request: Request, staff: StaffSession, active: str, title: str, message: str) -> Response:
    """A 404 that says what was not found and where to look instead."""
    return templates.TemplateResponse(request, "backoffice/problem.html", {
        **backoffice_context(request, staff, active), "title": title, "message": message}, status_code=404)


def find_product(session: Session, product_id: str) -> Product | None:
    return session.get(Product, product_id) if is_id(product_id) else None


def missing_product(request: Request, staff: StaffSession, product_id: str) -> Response:
    return not_found(request, staff, ACTIVE, "No such product",
                     f"There is no product {product_id[:100]}. Open it from the products list instead.")

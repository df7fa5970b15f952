"""What the notifications service's back-office pages share: the page templates, page numbers,
lists a page at a time, typed text kept for a form shown again, and a validation error of the
JSON admin API's models told in a sentence a seller reads (the pages validate with those models,
so a page and the API refuse the same input)."""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from postsale.notifications.entrypoints.pages import templates
from postsale.runtime.staff import StaffSession, backoffice_context

PER_PAGE = 50
MAX_PAGE = 10_000
SEPARATORS = re.compile(r"[\r\n,;]+")


def page_number(page: str) -> int:
    """The page asked for; anything that is not a page number is the first page, never an error."""
    # isascii: "²" is a digit to str.isdigit but not to int()
    ok = page.isascii() and page.isdigit() and 0 < len(page) <= 5 and int(page) > 0
    return min(int(page), MAX_PAGE) if ok else 1


def paged(session: Session, query, page: int) -> tuple[list, bool]:
    """One page of an ordered query, and whether another follows."""
    rows = list(session.exec(query.offset((page - 1) * PER_PAGE).limit(PER_PAGE + 1)).all())
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def kept(value: str, limit: int) -> str:
    """What was typed, cut to what the field takes, to fill the form in again."""
    return value[:limit].replace("\x00", "")


def holds_nul(*values: str) -> bool:
    return any("\x00" in value for value in values)


def split_list(value: str, limit: int = 5000) -> list[str]:
    """Addresses typed one a line (or separated by commas)."""
    return [item.strip() for item in SEPARATORS.split(value[:limit]) if item.strip()]


def problem_of(error: ValidationError, labels: dict[str, str]) -> str:
    """The first thing wrong, as "<field>: <what>."."""
    first = error.errors()[0]
    field = next((str(part) for part in first.get("loc", ()) if isinstance(part, str)), "")
    message = first.get("msg", "is not valid").removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if first.get("type") == "string_pattern_mismatch":
        message = "not in the form it takes: an id is like off_abc123 (letters, digits, _ . : -)"
    label = labels.get(field, field.replace("_", " ").capitalize() or "This form")
    return f"{label}: {message[:1].lower()}{message[1:]}".rstrip(".") + "."


def show(request: Request, staff: StaffSession, active: str, name: str, context: dict, *,
         status_code: int = 200, headers: dict | None = None) -> Response:
    return templates.TemplateResponse(request, name, {**backoffice_context(request, staff, active), **context},
                                      status_code=status_code, headers=headers)


def missing(request: Request, staff: StaffSession, active: str, title: str, message: str) -> Response:
    """A 404 that says what is missing and where to look instead, in the back-office layout."""
    return show(request, staff, active, "backoffice/problem.html", {"title": title, "message": message},
                status_code=404)

"""What every service's back-office pages share besides the layout (`postsale.runtime.staff`):
page numbers and paging, a form's problem in words (`problem_of`), text fields checked at the edge, and a
one-time token that makes a form's second submission change nothing (`create_once`: what the form
creates, stored under the token's unique constraint).

The templates' shared macros are in `backoffice/_macros.html` of the shared templates:
`{% from "backoffice/_macros.html" import when, pager %}`.
"""

from __future__ import annotations

import secrets
from typing import Callable, Sequence, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.runtime.staff import backoffice_problem

PER_PAGE = 50
MAX_PAGE = 10_000
T = TypeVar("T")
Row = TypeVar("Row")


class FormError(ValueError):
    """What the staff member must fix in a form, in a sentence: the page shows the form again with
    it (422) and what was typed, and changes nothing."""


def page_number(raw: str) -> int:
    """A list's page from the address; anything that is not a page number is the first page."""
    # isascii: "²" is a digit to str.isdigit but not to int()
    ok = raw.isascii() and raw.isdigit() and 0 < len(raw) <= 5 and int(raw) > 0
    return min(int(raw), MAX_PAGE) if ok else 1


def page_of_query(session: Session, query, page: int, per_page: int = PER_PAGE) -> tuple[list, bool]:
    """One page of an ordered query, and whether another follows."""
    rows = list(session.exec(query.offset((page - 1) * per_page).limit(per_page + 1)).all())
    return rows[:per_page], len(rows) > per_page


def page_of_list(rows: Sequence[T], page: int, per_page: int = PER_PAGE) -> tuple[list[T], int, bool]:
    """One page of rows already in memory (the last page when `page` is past the end), its number,
    and whether another follows."""
    number = min(page, max(1, -(-len(rows) // per_page)))
    return list(rows[(number - 1) * per_page:number * per_page]), number, len(rows) > number * per_page


def problem_of(error: ValidationError, labels: dict[str, str], *, pattern: str = "is not in the form it takes",
               first_only: bool = False) -> str:
    """A model's refusal as the sentence a seller reads: each field by its label on the form (or
    only the first, with `first_only`), what is wrong in plain words (not pydantic's "Dictionary
    should have at most 50 items after validation"), `pattern` for a value that does not match its
    pattern."""
    said: list[str] = []
    for problem in error.errors():
        field = next((str(part) for part in problem.get("loc", ()) if isinstance(part, str)), "")
        label = labels.get(field, field.replace("_", " ").capitalize() or "This form")
        sentence = f"{label}: {pattern if problem.get('type') == 'string_pattern_mismatch' else _in_words(problem)}"
        if sentence not in said:
            said.append(sentence)
    return "; ".join(said[:1] if first_only else said) + "."


def _in_words(problem: dict) -> str:
    kind, limits = problem.get("type", ""), problem.get("ctx") or {}
    count = limits.get("min_length", limits.get("max_length"))
    unit = "character" if kind.startswith("string") else "item"
    units = f"{count} {unit}{'' if count == 1 else 's'}"
    if kind in ("string_too_short", "too_short"):
        return "cannot be empty" if count == 1 else f"must have at least {units}"
    words = {"missing": "is needed", "string_too_long": f"must have at most {units}",
             "too_long": f"must have at most {units}", "less_than_equal": f"must be at most {limits.get('le')}",
             "less_than": f"must be less than {limits.get('lt')}", "greater_than_equal": f"must be at least {limits.get('ge')}",
             "greater_than": f"must be more than {limits.get('gt')}", "int_parsing": "must be a whole number",
             "int_type": "must be a whole number", "int_from_float": "must be a whole number",
             "float_parsing": "must be a number", "bool_parsing": "must be yes or no",
             "literal_error": f"must be one of {limits.get('expected')}"}
    if kind in words:
        return words[kind]
    message = str(problem.get("msg", "is not valid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{message[:1].lower()}{message[1:]}".rstrip(".")


def form_text(value: str, *, label: str, max_length: int, required: bool = False) -> str:
    """A text field as typed, without the spaces around it, or FormError saying what is wrong."""
    value = value.strip()
    if "\x00" in value:
        raise FormError(f"{label} cannot hold NUL characters.")
    if required and not value:
        raise FormError(f"Enter the {label[:1].lower()}{label[1:]}.")
    if len(value) > max_length:
        raise FormError(f"{label} can be at most {max_length} characters.")
    return value


def typed_again(value: str, max_length: int) -> str:
    """What was typed, cut to what the field takes, to fill a refused form in again."""
    return value[:max_length].replace("\x00", "")


def submission_token() -> str:
    """A token for one submission of a form that creates or moves something: the form carries it
    in a hidden `submission` field, and the use case stores it under a unique constraint (or uses it
    as the provider's idempotency key), so a double click or a reload after posting does it once."""
    return secrets.token_urlsafe(18)


def is_submission_token(value: str) -> bool:
    return 16 <= len(value) <= 64 and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def submission_of(raw: str) -> str:
    """The form's one-time token; FormError when the form came without a valid one (nothing changes)."""
    if not is_submission_token(raw):
        raise FormError("This form came without its one-time token, so nothing was changed: check it and send it "
                        "again.")
    return raw


def made_by(session: Session, table: type[Row], token: str) -> Row | None:
    """What an earlier submission of the same form created, if one did."""
    return session.exec(select(table).where(table.submission == token)).first()  # type: ignore[attr-defined]


def create_once(session: Session, table: type[Row], token: str, make: Callable[[], Row]) -> tuple[Row, bool]:
    """What the form with this token creates, committed, and True; or what an earlier submission of
    it created, and False: a double click or a reload after posting creates nothing more. The unique
    token is the guarantee when both submissions run at once (the later one is rolled back). What
    `make` raises (a FormError) leaves the transaction to the caller."""
    earlier = made_by(session, table, token)
    if earlier is not None:
        return earlier, False
    try:
        row = make()
        row.submission = token  # type: ignore[attr-defined]
        session.add(row)
        session.commit()
    except IntegrityError:
        session.rollback()
        earlier = made_by(session, table, token)
        if earlier is None:
            raise
        return earlier, False
    return row, True


def not_found(request: Request, templates, message: str, *, title: str = "This page does not exist") -> Response:
    """A 404 page in the back office's layout: `message` says what does not exist and where to look."""
    return backoffice_problem(request, templates, 404, message, title=title)

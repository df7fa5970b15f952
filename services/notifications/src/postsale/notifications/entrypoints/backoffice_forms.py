"""What the notifications service's back-office pages share besides `postsale.runtime.backoffice`:
the page templates, addresses typed one a line, a validation error of the JSON admin API's models
told in a sentence a seller reads (the pages validate with those models, so a page and the API
refuse the same input), and the submission token of a form that creates something."""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from postsale.notifications.entrypoints.pages import templates
from postsale.runtime import backoffice
from postsale.runtime.backoffice import is_submission_token, submission_token
from postsale.runtime.staff import StaffSession, backoffice_context

SEPARATORS = re.compile(r"[\r\n,;]+")
RESENT = ("This form was not sent as the page made it (an old or altered page): nothing was changed. "
          "Check it and send it again.")


def split_list(value: str, limit: int = 5000) -> list[str]:
    """Addresses typed one a line (or separated by commas)."""
    return [item.strip() for item in SEPARATORS.split(value[:limit]) if item.strip()]


ID_FORM = "is not in the form it takes: an id is like offer_1a2b3c (letters, digits, _ . : -)"


def problem_of(error: ValidationError, labels: dict[str, str]) -> str:
    """The first thing wrong, as "<field>: <what>." (`backoffice.problem_of`), an id's form named."""
    return backoffice.problem_of(error, labels, pattern=ID_FORM, first_only=True)


def submission_of(value: str) -> str:
    """The token a refused form carries again: the one it was sent with when it is one (the form
    made nothing yet), else a fresh one."""
    return value if is_submission_token(value) else submission_token()


def show(request: Request, staff: StaffSession, active: str, name: str, context: dict, *,
         status_code: int = 200, headers: dict | None = None) -> Response:
    return templates.TemplateResponse(request, name, {**backoffice_context(request, staff, active), **context},
                                      status_code=status_code, headers=headers)


"""A refused back-office form says what is wrong in the seller's words, each field by its label on
the form (`backoffice.problem_of`), never in the validator's ("Dictionary should have at most 50
items after validation, not 51")."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from postsale.runtime.backoffice import problem_of

pytestmark = pytest.mark.unit
LABELS = {"details": "Details", "alert_emails": "Alert emails", "delay_hours": "Delay", "name": "Name",
          "product_id": "Product"}


class Form(BaseModel):
    details: dict[str, str] = Field(default_factory=dict, max_length=50)
    alert_emails: list[str] = Field(default_factory=list, max_length=5)
    delay_hours: int = Field(1, ge=0, le=17520)
    name: str = Field("N", min_length=1, max_length=100)
    product_id: str = Field("prod_1", pattern=r"^prod_[a-z0-9]+$")
    note: str = ""

    @field_validator("note")
    @classmethod
    def _polite(cls, value: str) -> str:
        if "!" in value:
            raise ValueError("A note cannot shout.")
        return value


def said(**fields) -> str:
    with pytest.raises(ValidationError) as refused:
        Form(**fields)
    return problem_of(refused.value, LABELS, pattern="is an id like prod_1a2b3c")


@pytest.mark.parametrize(("fields", "sentence"), [
    ({"details": {str(n): "x" for n in range(51)}}, "Details: must have at most 50 items."),
    ({"alert_emails": ["a@example.com"] * 6}, "Alert emails: must have at most 5 items."),
    ({"delay_hours": 17521}, "Delay: must be at most 17520."),
    ({"delay_hours": -1}, "Delay: must be at least 0."),
    ({"delay_hours": "soon"}, "Delay: must be a whole number."),
    ({"name": ""}, "Name: cannot be empty."),
    ({"name": "x" * 101}, "Name: must have at most 100 characters."),
    ({"product_id": "prod 1"}, "Product: is an id like prod_1a2b3c."),
    ({"note": "Now!"}, "Note: a note cannot shout."),
    ({"name": "", "delay_hours": 20000}, "Delay: must be at most 17520; Name: cannot be empty."),
])
def test_each_refusal_is_a_sentence_with_the_forms_label(fields, sentence):
    assert said(**fields) == sentence


def test_a_form_that_shows_one_problem_at_a_time_gets_the_first():
    with pytest.raises(ValidationError) as refused:
        Form(name="", delay_hours=20000)
    assert problem_of(refused.value, LABELS, first_only=True) == "Delay: must be at most 17520."

"""The compatibility check catches what an older reader could not read, and nothing else."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from postsale.contracts.compatibility import breaking_changes

pytestmark = pytest.mark.unit


class Address(BaseModel):
    city: str


class Before(BaseModel):
    order_id: str
    amount: int
    note: str | None = None
    status: Literal["paid", "refunded"]
    address: Address | None = None
    tags: list[str] = Field(default_factory=list)


def changes(after: type[BaseModel]) -> list[str]:
    return breaking_changes(Before.model_json_schema(), after.model_json_schema())


def test_adding_an_optional_field_is_compatible():
    class After(Before):
        coupon: str | None = None

    assert changes(After) == []


def test_a_removed_or_renamed_field_breaks():
    class After(BaseModel):
        order_ref: str
        amount: int
        note: str | None = None
        status: Literal["paid", "refunded"]
        address: Address | None = None
        tags: list[str] = Field(default_factory=list)

    assert "Before.order_id: removed (or renamed)" in changes(After)


def test_a_retyped_field_breaks():
    class After(Before):
        amount: str

    assert changes(After) == ["Before.amount: type changed from ('integer', None) to ('string', None)"]


def test_a_new_required_field_breaks():
    class After(Before):
        currency: str

    assert changes(After) == ["Before.currency: new required field"]


def test_an_optional_field_made_required_breaks():
    class After(Before):
        note: str

    assert any(problem.startswith("Before.note:") for problem in changes(After))


def test_a_changed_enum_or_nested_change_breaks():
    class Moved(BaseModel):
        town: str

    class After(Before):
        status: Literal["paid"]
        address: Moved | None = None

    problems = changes(After)
    assert any(p.startswith("Before.status: type changed") for p in problems)
    assert "Before.address.city: removed (or renamed)" in problems


def test_a_list_of_another_type_breaks():
    class After(Before):
        tags: list[int] = Field(default_factory=list)

    assert changes(After) == ["Before.tags[]: type changed from ('string', None) to ('integer', None)"]

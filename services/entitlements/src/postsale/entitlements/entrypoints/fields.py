"""Request fields PostgreSQL can store: ids in a safe alphabet, text without NUL characters (which
PostgreSQL's text refuses, whatever its length)."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Request
from pydantic import AfterValidator, Field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("may not contain NUL characters")
    return value


Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Text = Annotated[str, AfterValidator(_no_nul)]


async def no_nul_in_path(request: Request) -> None:
    """A router dependency: an id with a NUL in the path names nothing. Async: a plain `def`
    dependency costs a hop to the thread pool, far more than this check."""
    if any("\x00" in value for value in request.path_params.values()):
        raise HTTPException(status_code=404, detail="not found")

"""The floor for `/api/library`: a bare FastAPI JSON endpoint that answers the same shape of list
(one product) with no session, no database and no middleware.

Its handler is an `async def`, as the library's is, so neither pays FastAPI's hop to the thread
pool and the difference is what the service adds. The benchmark serves it with the command line the
services run under (`python -m uvicorn --factory ...`, same flags), in a process of its own.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class ProductOut(BaseModel):
    id: str
    name: str
    description: str
    delivery_type: str


PRODUCTS = [ProductOut(id="prod_0123456789abcdef", name="Bench", description="", delivery_type="membership")]


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/library")
    async def library() -> list[ProductOut]:
        return PRODUCTS

    return app

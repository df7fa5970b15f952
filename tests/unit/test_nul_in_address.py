"""A NUL character in a request's address is refused before any route runs (`RefuseNulInAddress`,
which every service's app carries): no id or filter holding one reaches the database."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from postsale.runtime.web import RefuseNulInAddress

pytestmark = pytest.mark.unit



def app_with_a_lookup() -> tuple[FastAPI, list[str]]:
    app, looked_up = FastAPI(), []

    @app.get("/admin/things/{thing_id}")
    def thing(thing_id: str, email: str = "") -> dict:
        looked_up.append(thing_id + email)
        return {"id": thing_id}

    app.add_middleware(RefuseNulInAddress)
    return app, looked_up


def test_a_nul_in_the_path_or_the_query_is_a_400_that_reaches_no_route():
    app, looked_up = app_with_a_lookup()
    client = TestClient(app)
    for url in ("/admin/things/a%00b", "/admin/things/a?email=x%00y"):
        refused = client.get(url)
        assert refused.status_code == 400 and "NUL" in refused.json()["detail"]
    assert looked_up == []
    assert client.get("/admin/things/a", params={"email": "ann@example.com"}).json() == {"id": "a"}
    assert looked_up == ["aann@example.com"]

"""A NUL character in a request's address or in a form's fields is refused before any route runs
(`RefuseNul`, which every service's app carries): no id, filter or typed text holding one reaches
the database or an email. A person is told on a page, a program in JSON."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import ValidationError, field_validator
from fastapi import FastAPI, Form, UploadFile
from fastapi.testclient import TestClient

from postsale.runtime.web import MAX_CUSTOMER_FORM_BYTES, RefuseNul, RequestBody, normalize_email

pytestmark = pytest.mark.unit


def app_with_a_lookup() -> tuple[FastAPI, list[str]]:
    app, seen = FastAPI(), []

    @app.get("/admin/things/{thing_id}")
    def thing(thing_id: str, email: str = "") -> dict:
        seen.append(thing_id + email)
        return {"id": thing_id}

    @app.post("/checkout")
    def checkout(email: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> dict:
        seen.append(email + reason)
        return {"email": email}

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict:
        seen.append(file.filename or "")
        return {"size": len(await file.read())}

    app.add_middleware(RefuseNul)
    return app, seen


def test_a_nul_in_the_path_or_the_query_is_a_400_that_reaches_no_route():
    app, seen = app_with_a_lookup()
    client = TestClient(app)
    for url in ("/admin/things/a%00b", "/admin/things/a?email=x%00y"):
        refused = client.get(url)
        assert refused.status_code == 400 and "NUL" in refused.json()["detail"]
    assert seen == []
    assert client.get("/admin/things/a", params={"email": "ann@example.com"}).json() == {"id": "a"}
    assert seen == ["aann@example.com"]


def test_a_nul_in_a_forms_field_is_a_400_page_for_a_person_and_reaches_no_route():
    app, seen = app_with_a_lookup()
    client = TestClient(app)
    person = client.post("/checkout", data={"email": "nul\x00guy@example.test"}, headers={"Accept": "text/html"})
    assert person.status_code == 400 and person.headers["content-type"].startswith("text/html")
    assert "A field of the form holds a NUL character" in person.text
    program = client.post("/checkout", content=b"email=ann%40example.com&reason=x%00", headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert program.status_code == 400 and "NUL" in program.json()["detail"]
    assert seen == []
    # The same form without one goes through whole, as does a file whose bytes hold NULs, and a
    # literal "%00" typed into a field (sent as %2500).
    typed = client.post("/checkout", data={"email": "ann@example.com", "reason": "100%00 sure"})
    assert typed.json() == {"email": "ann@example.com"} and seen == ["ann@example.com100%00 sure"]
    assert client.post("/upload", files={"file": ("a.bin", b"\x00\x01\x00")}).json() == {"size": 3}


def test_an_email_address_holds_no_control_character():
    assert normalize_email(" Ann@Example.COM ") == "ann@example.com"
    for raw in ("nul\x00guy@example.test", "ann@exa\x01mple.com", "ann@example.co\x7f"):
        assert normalize_email(raw) is None


async def sent_in_chunks(chunks: list[bytes]) -> tuple[int, bytes | None]:
    """The middleware's answer to a customer's form arriving in `chunks`, and the body the route
    read (None: no route ran)."""
    answer, read = {}, []

    async def route(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        read.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pending = [{"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
               for n, chunk in enumerate(chunks)]

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]

    scope = {"type": "http", "path": "/checkout", "query_string": b"", "method": "POST",
             "headers": [(b"content-type", b"application/x-www-form-urlencoded")]}
    await RefuseNul(route)(scope, receive, send)
    return answer["status"], read[0] if read else None


async def test_a_nul_split_across_chunks_is_found_and_a_form_past_its_limit_is_refused_as_it_comes():
    assert await sent_in_chunks([b"email=a%40b.c&reason=x%", b"00y"]) == (400, None)
    assert await sent_in_chunks([b"email=a%40b.c&reason=x%2", b"500"]) == (200, b"email=a%40b.c&reason=x%2500")
    huge = b"x" * (MAX_CUSTOMER_FORM_BYTES // 4 + 1)
    assert await sent_in_chunks([b"reason="] + [huge] * 4) == (413, None)


class Template(RequestBody):
    subject: str
    parts: list[str] = []

    @field_validator("subject")
    @classmethod
    def _trimmed(cls, value: str) -> str:  # a field's own check runs after the shared ones
        return value.strip()


@pytest.mark.parametrize(("body", "where"), [({"subject": "Hi\x00"}, ("subject",)),
                                             ({"subject": "Hi", "parts": ["a", "b\x00"]}, ("parts",))])
def test_a_request_body_names_the_field_that_holds_a_nul(body, where):
    with pytest.raises(ValidationError) as refused:
        Template.model_validate(body)
    [problem] = refused.value.errors()
    assert problem["loc"] == where and problem["msg"] == "Value error, cannot hold NUL characters"


def test_a_request_body_refuses_another_type_or_an_unknown_field_before_a_fields_own_check():
    with pytest.raises(ValidationError) as refused:
        Template.model_validate({"subject": True, "subjcet": "Hi"})
    assert {(e["loc"], e["type"]) for e in refused.value.errors()} == {(("subject",), "string_type"),
                                                                        (("subjcet",), "extra_forbidden")}
    assert Template.model_validate({"subject": " Hi "}).subject == "Hi"

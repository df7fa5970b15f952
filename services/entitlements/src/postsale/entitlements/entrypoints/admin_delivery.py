"""The seller's admin API for delivery: a download product's files, a product's deliveries (third-party
calls and their attempts, links sent, keys issued) and a membership's sections and lessons."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session

from postsale.entitlements import products, reconciliation
from postsale.entitlements.adapters.tables import Delivery, DeliveryAttempt, Lesson, Product, ProductFile, Section
from postsale.entitlements.delivery import download, membership, runner
from postsale.entitlements.delivery.integration import IntegrationSettings
from postsale.entitlements.entrypoints.fields import Id, Text, no_nul_in_path
from postsale.entitlements.entrypoints.uploads import FIELD, BadUpload, StreamedFile, UploadTooLarge, boundary_of
from postsale.runtime.backoffice import create_once
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import SessionDep
from postsale.runtime.web import RequestBody, require_admin

admin_delivery = APIRouter(prefix="/admin", dependencies=[Depends(require_admin), Depends(no_nul_in_path)],
                           tags=["admin"])


def _product(session: Session, product_id: str, delivery_type: str | None = None) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"unknown product {product_id}")
    if delivery_type is not None and product.delivery_type != delivery_type:
        raise HTTPException(status_code=409, detail=f"product {product_id} is delivered as {product.delivery_type}, "
                                                    f"not as {delivery_type}")
    return product


# --- files ---------------------------------------------------------------------------------


class FileOut(BaseModel):
    id: str
    product_id: str
    name: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime

    @classmethod
    def of(cls, file: ProductFile) -> "FileOut":
        return cls(id=file.id, product_id=file.product_id, name=file.name, content_type=file.content_type,
                   size=file.size, sha256=file.sha256, uploaded_at=as_utc(file.uploaded_at))


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD], "properties": {FIELD: {"type": "string", "format": "binary"}}}}}}}


def _check_download_product(engine, product_id: str) -> None:
    with Session(engine) as session:
        _product(session, product_id, "download")


def _record_file(engine, product_id: str, file_id: str, received, now: datetime,
                 submission: str | None = None) -> tuple[ProductFile, bool]:
    """Records a file stored under `file_id`, and True. With a one-time token (the back-office
    form's, or the API's `Idempotency-Key`), the same upload sent again records nothing: the file
    its first submission recorded, and False (the caller deletes what this one stored)."""
    with Session(engine) as session:
        _product(session, product_id, "download")

        def add() -> ProductFile:
            file = download.add_file(session, file_id=file_id, product_id=product_id, name=received.name,
                                     content_type=received.content_type, size=received.size,
                                     sha256=received.sha256, now=now)
            products.retry_deliveries(session, product_id, now)  # grants that waited for a file get their link
            return file

        if submission is None:
            file, created = add(), True
            session.commit()
        else:
            file, created = create_once(session, ProductFile, submission, add)
        session.refresh(file)
        return file, created


# Kept apart from the back office's one-time form tokens, which never hold a colon.
_API_KEY_PREFIX = "api:"
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=r"^[ -~]{1,255}$",
    description="Any 1 to 255 printable ASCII characters, new for each file: the same upload sent again "
                "with the same key (a retry after a timeout) stores nothing more and answers with the "
                "file the first one stored.")]


@admin_delivery.post("/products/{product_id}/files", status_code=201, response_model=FileOut,
                     openapi_extra=_UPLOAD_BODY, responses={413: {"description": "The file is over the limit."}})
async def upload_file(product_id: str, request: Request, response: Response,
                      idempotency_key: IdempotencyKey = None) -> FileOut:
    """Adds a file to a download product: `multipart/form-data` with the file in the field `file`.
    The body is streamed to storage as it arrives and refused past `ENTITLEMENTS_MAX_UPLOAD_BYTES`.
    Customers waiting for a first file get their link at once. With an `Idempotency-Key`, a repeat
    of the same upload answers with the first one's file and `Idempotent-Replayed: true`."""
    engine, storage = request.app.state.engine, request.app.state.storage
    limit = request.app.state.delivery_settings.max_upload_bytes
    await run_in_threadpool(_check_download_product, engine, product_id)
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
    except BadUpload as exc:
        raise HTTPException(status_code=415, detail=str(exc)) from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 1024 * 1024:
        raise HTTPException(status_code=413, detail=f"the file is larger than the limit of {limit} bytes")
    file_id = download.new_file_id()
    receiver = StreamedFile(boundary, storage, download.storage_key(product_id, file_id), limit)
    try:
        async for chunk in request.stream():
            await run_in_threadpool(receiver.feed, chunk)
        received = await run_in_threadpool(receiver.finish)
    except UploadTooLarge as exc:
        await run_in_threadpool(receiver.abort)
        raise HTTPException(status_code=413, detail=str(exc)) from None
    except BadUpload as exc:
        await run_in_threadpool(receiver.abort)
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except BaseException:
        await run_in_threadpool(receiver.abort)
        raise
    submission = _API_KEY_PREFIX + idempotency_key if idempotency_key is not None else None
    try:
        file, created = await run_in_threadpool(_record_file, engine, product_id, file_id, received, utcnow(),
                                                submission)
    except BaseException:
        await run_in_threadpool(storage.delete, download.storage_key(product_id, file_id))
        raise
    if not created:  # a repeat: the first upload with this key stored the file
        await run_in_threadpool(storage.delete, download.storage_key(product_id, file_id))
        if (file.product_id, file.sha256) != (product_id, received.sha256):
            raise HTTPException(status_code=422, detail=f"the Idempotency-Key was used for another upload (file "
                                                        f"{file.id} of product {file.product_id}): send a new "
                                                        f"file with a new key")
        response.headers["Idempotent-Replayed"] = "true"
    return FileOut.of(file)


@admin_delivery.get("/products/{product_id}/files", response_model=list[FileOut])
def list_files(product_id: str, session: SessionDep) -> list[FileOut]:
    _product(session, product_id)
    return [FileOut.of(f) for f in download.live_files(session, product_id)]


@admin_delivery.delete("/products/{product_id}/files/{file_id}", status_code=204)
def remove_file(product_id: str, file_id: str, request: Request, session: SessionDep) -> Response:
    """Takes a file out of the product and deletes it; links to it stop working."""
    try:
        file = download.remove_file(session, product_id, file_id, utcnow())
    except download.UnknownFile:
        raise HTTPException(status_code=404, detail=f"product {product_id} has no file {file_id}") from None
    session.commit()
    request.app.state.storage.delete(file.storage_key)
    return Response(status_code=204)


# --- deliveries ----------------------------------------------------------------------------


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    outcome: Literal["done", "skipped", "retry", "needs_customer", "failed"]
    status_code: int | None = Field(description="The third party's HTTP answer, when it answered.")
    detail: str | None
    duration_ms: int

    @classmethod
    def of(cls, row: DeliveryAttempt) -> "AttemptOut":
        return cls(attempt=row.attempt, started_at=as_utc(row.started_at), outcome=row.outcome,  # type: ignore[arg-type]
                   status_code=row.status_code, detail=row.detail, duration_ms=row.duration_ms)


class DeliveryOut(BaseModel):
    id: str = Field(description="Also the `webhook-id` of a third-party call.")
    customer_id: str
    email: str
    grant_id: str
    purchase_id: str | None
    action: Literal["grant", "revoke"]
    change: str = Field(description="The ledger entry behind it: grant, restore, revoke, expire or suspend.")
    reason: str
    status: Literal["pending", "retrying", "done", "skipped", "needs_customer", "failed", "superseded"]
    detail: str | None = Field(description="What the newest attempt said.")
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, row: Delivery, attempts: list[DeliveryAttempt]) -> "DeliveryOut":
        return cls(id=row.id, customer_id=row.customer_id, email=row.email, grant_id=row.grant_id,
                   purchase_id=row.purchase_id, action=row.action, change=row.ledger_action,  # type: ignore[arg-type]
                   reason=row.reason, status=row.status, detail=row.detail,  # type: ignore[arg-type]
                   created_at=as_utc(row.created_at), next_attempt_at=as_utc(row.next_attempt_at),
                   finished_at=as_utc(row.finished_at), attempts=[AttemptOut.of(a) for a in attempts])


class DeliveriesOut(BaseModel):
    product_id: str
    delivery_type: str
    endpoint_url: str | None = Field(default=None, description="For an integration: where calls go.")
    deliveries: list[DeliveryOut] = Field(description="Newest first, at most 200.")


@admin_delivery.get("/products/{product_id}/deliveries", response_model=DeliveriesOut)
def list_deliveries(product_id: str, session: SessionDep, customer_id: Id | None = None) -> DeliveriesOut:
    """What delivery did for each grant of the product, every attempt with its outcome: for an
    integration, each call to the endpoint, its answer, and when the next retry is due."""
    product = _product(session, product_id)
    rows = runner.deliveries_of(session, product_id, customer_id=customer_id)
    endpoint = None
    if product.delivery_type == "integration":
        endpoint = IntegrationSettings.model_validate(product.delivery_settings or {}).endpoint_url
    return DeliveriesOut(product_id=product_id, delivery_type=product.delivery_type, endpoint_url=endpoint,
                         deliveries=[DeliveryOut.of(d, a) for d, a in rows])


class RetriedOut(BaseModel):
    retried: int = Field(description="How many waiting deliveries are due now.")


@admin_delivery.post("/products/{product_id}/deliveries/retry", response_model=RetriedOut)
def retry_deliveries(product_id: str, session: SessionDep) -> RetriedOut:
    """Tries the product's waiting deliveries again now instead of at their next retry time (after
    you fixed the endpoint, for instance)."""
    _product(session, product_id)
    retried = products.retry_deliveries(session, product_id)
    session.commit()
    return RetriedOut(retried=retried)


# --- membership content --------------------------------------------------------------------


def _media_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("https://", "http://")):
        raise ValueError("must be an http or https URL")
    return value


class NewSection(RequestBody):
    title: Text = Field(min_length=1, max_length=200)
    position: int | None = Field(default=None, ge=0, le=100_000, description="Order among sections; empty: last.")


class SectionChange(RequestBody):
    title: Text | None = Field(default=None, min_length=1, max_length=200)
    position: int | None = Field(default=None, ge=0, le=100_000)


class NewLesson(RequestBody):
    title: Text = Field(min_length=1, max_length=200)
    body: Text = Field(default="", max_length=100_000, description="The lesson's text.")
    video_url: str | None = Field(default=None, max_length=2000, description="A video to watch (a link).")
    audio_url: str | None = Field(default=None, max_length=2000, description="An audio to listen to (a link).")
    drip_days: int | None = Field(default=None, ge=0, le=3650,
                                  description="Opens this many days after the customer's access began; empty: at once.")
    position: int | None = Field(default=None, ge=0, le=100_000, description="Order in the section; empty: last.")

    @field_validator("video_url", "audio_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _media_url(value)


class LessonChange(RequestBody):
    section_id: Id | None = None
    title: Text | None = Field(default=None, min_length=1, max_length=200)
    body: Text | None = Field(default=None, max_length=100_000)
    video_url: str | None = Field(default=None, max_length=2000)
    audio_url: str | None = Field(default=None, max_length=2000)
    drip_days: int | None = Field(default=None, ge=0, le=3650)
    position: int | None = Field(default=None, ge=0, le=100_000)

    @field_validator("video_url", "audio_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _media_url(value)


class LessonOut(BaseModel):
    id: str
    section_id: str
    title: str
    body: str
    video_url: str | None
    audio_url: str | None
    drip_days: int | None
    position: int

    @classmethod
    def of(cls, lesson: Lesson) -> "LessonOut":
        return cls.model_validate(lesson, from_attributes=True)


class SectionOut(BaseModel):
    id: str
    product_id: str
    title: str
    position: int
    lessons: list[LessonOut] = Field(default_factory=list)


def _content_call(session: Session, call, *args, **kwargs):
    try:
        return call(session, *args, **kwargs)
    except membership.UnknownContent as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except membership.NotAMembership as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@admin_delivery.get("/products/{product_id}/content", response_model=list[SectionOut])
def get_content(product_id: str, session: SessionDep) -> list[SectionOut]:
    """A membership's sections in order, each with its lessons in order."""
    _product(session, product_id, "membership")
    return [SectionOut(id=s.id, product_id=s.product_id, title=s.title, position=s.position,
                       lessons=[LessonOut.of(lesson) for lesson in lessons])
            for s, lessons in membership.content(session, product_id)]


@admin_delivery.post("/products/{product_id}/sections", status_code=201, response_model=SectionOut)
def add_section(product_id: str, body: NewSection, session: SessionDep) -> SectionOut:
    _product(session, product_id)
    section: Section = _content_call(session, membership.add_section, product_id, title=body.title,
                                     position=body.position)
    session.commit()
    return SectionOut(id=section.id, product_id=product_id, title=section.title, position=section.position)


@admin_delivery.patch("/products/{product_id}/sections/{section_id}", response_model=SectionOut)
def change_section(product_id: str, section_id: str, body: SectionChange, session: SessionDep) -> SectionOut:
    section: Section = _content_call(session, membership.update_section, product_id, section_id,
                                     **body.model_dump(exclude_unset=True, exclude_none=True))
    session.commit()
    return SectionOut(id=section.id, product_id=product_id, title=section.title, position=section.position)


@admin_delivery.delete("/products/{product_id}/sections/{section_id}", status_code=204)
def remove_section(product_id: str, section_id: str, session: SessionDep) -> Response:
    """Removes the section and its lessons."""
    _content_call(session, membership.remove_section, product_id, section_id)
    session.commit()
    return Response(status_code=204)


@admin_delivery.post("/products/{product_id}/sections/{section_id}/lessons", status_code=201,
                     response_model=LessonOut)
def add_lesson(product_id: str, section_id: str, body: NewLesson, session: SessionDep) -> LessonOut:
    _product(session, product_id)
    lesson: Lesson = _content_call(session, membership.add_lesson, product_id, section_id,
                                   **body.model_dump(exclude={"position"}), position=body.position)
    session.commit()
    return LessonOut.of(lesson)


@admin_delivery.patch("/products/{product_id}/lessons/{lesson_id}", response_model=LessonOut)
def change_lesson(product_id: str, lesson_id: str, body: LessonChange, session: SessionDep) -> LessonOut:
    """Changes what is given; `drip_days`, `video_url` and `audio_url` may be set to null."""
    changes = body.model_dump(exclude_unset=True)
    for required in ("section_id", "title", "body", "position"):
        if changes.get(required, "") is None:
            raise HTTPException(status_code=422, detail=f"{required}: may not be null")
    lesson: Lesson = _content_call(session, membership.update_lesson, product_id, lesson_id, **changes)
    session.commit()
    return LessonOut.of(lesson)


@admin_delivery.delete("/products/{product_id}/lessons/{lesson_id}", status_code=204)
def remove_lesson(product_id: str, lesson_id: str, session: SessionDep) -> Response:
    _content_call(session, membership.remove_lesson, product_id, lesson_id)
    session.commit()
    return Response(status_code=204)



# --- reconciliation --------------------------------------------------------------------------


class FindingOut(BaseModel):
    kind: Literal["paid_without_access", "access_without_payment"]
    customer_id: str
    product_id: str
    purchase_id: str | None
    grant_id: str | None
    expected: str
    actual: str
    cause: str
    repaired: bool


class ReconciliationOut(BaseModel):
    ran_at: datetime | None = Field(description="When the newest scheduled run finished; empty: none has yet.")
    purchases: int
    mismatches: int
    repaired: int
    findings: list[FindingOut]
    next_run_at: datetime | None


@admin_delivery.get("/reconciliation", response_model=ReconciliationOut)
def last_reconciliation(session: SessionDep) -> ReconciliationOut:
    """What the newest scheduled reconciliation found (purchases received compared with grants),
    and when the next one runs. `python -m postsale.entitlements.reconcile` runs one on demand."""
    done, pending = reconciliation.latest_run(session)
    findings = json.loads(done.report)["findings"] if done is not None and done.report else []
    return ReconciliationOut(ran_at=as_utc(done.done_at) if done else None, purchases=done.checked if done else 0,
                             mismatches=done.mismatches if done else 0, repaired=done.repaired if done else 0,
                             findings=[FindingOut(**f) for f in findings],
                             next_run_at=as_utc(pending.due_at) if pending else None)
